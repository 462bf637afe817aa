"""`inspect --format`: the Go-template subset scripts written for `docker inspect` use, and readable errors."""

from __future__ import annotations

import pytest

from netkit.runtime import template
from netkit.runtime.template import TemplateError

SHOWN = {
    "Id": "ab" * 32, "Name": "web",
    "State": {"Running": True, "Pid": 12, "ExitCode": None},
    "NetworkSettings": {
        "IPAddress": "10.1.0.2", "Ports": ["80/tcp -> 0.0.0.0:8080"],
        "Networks": {"b": {"IPAddress": "10.2.0.2", "Aliases": None},
                     "a": {"IPAddress": "10.1.0.2", "Aliases": ["www", "abababababab"]}},
    },
    "Created": 1796524283.5,
}


@pytest.mark.parametrize("fmt, out", [
    ("{{.NetworkSettings.IPAddress}}", "10.1.0.2"),
    ("{{ .Name }}:{{.State.Pid}}", "web:12"),
    ('{{index .NetworkSettings.Networks "a"}}', "map[Aliases:[www abababababab] IPAddress:10.1.0.2]"),
    ('{{(index .NetworkSettings.Networks "b").IPAddress}}', "10.2.0.2"),
    ('{{index .NetworkSettings.Networks "a" "Aliases" 0}}', "www"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.1.0.2 10.2.0.2 "),  # keys in order, as Go
    ("{{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.IPAddress}};{{end}}", "a=10.1.0.2;b=10.2.0.2;"),
    ("{{range $i, $p := .NetworkSettings.Ports}}{{$i}}:{{$p}}{{end}}", "0:80/tcp -> 0.0.0.0:8080"),
    ("{{range .NetworkSettings.Networks.b.Aliases}}x{{else}}none{{end}}", "none"),
    ('{{json .NetworkSettings.Networks.b}}', '{"IPAddress":"10.2.0.2","Aliases":null}'),
    ("{{.Name | json}}", '"web"'),
    ('{{join .NetworkSettings.Networks.a.Aliases ","}}', "www,abababababab"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{with .State}}{{.Pid}}{{end}}{{with .Nope}}x{{else}}-{{end}}", "12-"),
    ("{{.Nope}} {{.State.ExitCode}} {{.NetworkSettings.Networks.c.IPAddress}}", "<no value> <nil> <no value>"),
    ("{{len .NetworkSettings.Networks}} {{upper .Name}} {{$.Name}}", "2 WEB web"),
    ("{{.Created}} {{.State.Running}}", "1796524283.5 true"),
    ("  {{- .Name -}}  \n", "web"),
    ("{{/* a comment */}}{{println .Name}}", "web\n"),
    ("no actions", "no actions"),
])
def test_formats(fmt: str, out: str) -> None:
    assert template.render(fmt, SHOWN) == out


@pytest.mark.parametrize("fmt, text", [
    ('{{printf "%s" .Name}}', 'function "printf" is not supported'),
    ("{{.Name", "unclosed action"),
    ("{{if .Name}}x", "has no {{end}}"),
    ("{{end}}", "unexpected {{end}}"),
    ('{{template "x"}}', "{{template}} is not supported"),
    ("{{range .Name}}{{end}}", "range can't iterate over web"),
    ("{{.Name.First}}", "can't evaluate field First in web"),
    ("{{$x}}", "undefined variable: $x"),
    ("{{.Name 1}}", ".Name is not a function"),
    ("{{$x := .Name}}{{$x.First 1}}", "$x.First is not a function"),
    ("{{. 1}}", ". is not a function"),
    ('{{index .NetworkSettings.Ports 3}}', "index out of range"),
    ("{{json}}", "wrong number of arguments for json"),
    ("{{.Name ! }}", "unexpected"),
])
def test_what_is_outside_the_subset_is_a_readable_error(fmt: str, text: str) -> None:
    with pytest.raises(TemplateError) as info:
        template.render(fmt, SHOWN)
    assert text in info.value.msg and info.value.msg.startswith("template: ")
