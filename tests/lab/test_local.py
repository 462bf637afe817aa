"""The local backend: converging, exec, inspect, and taking down labs that failed half-way."""

from __future__ import annotations

import json
import os

from tests.lab.conftest import container_pids

SMALL = """\
name: small
links:
  lan: {{subnet: 10.248.0.0/24}}
hosts:
  h1:
    links: {{lan: 10.248.0.10}}
    containers:
      web: {{ports: ["8080:80"], serve: {{http: 80, body: {body}}}}}
{extra}
  h2:
    links: {{lan: 10.248.0.20}}
checks:
  - {{from: h2, to: "h1:8080", proto: http, body: {body}}}
"""
WORKER = "      worker: {cmd: [sleep, infinity]}"


def _write(tmp_path: os.PathLike[str], body: str = "v1", extra: str = WORKER) -> str:
    path = os.path.join(str(tmp_path), "small.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(SMALL.format(body=body, extra=extra))
    return path


def _ids(lab: "object") -> dict[str, str]:
    view = json.loads(lab("inspect", "--json").stdout)  # type: ignore[operator]
    return {c["name"]: c["id"] for c in view["h1"]["containers"]}


def test_up_converges_a_changed_container_and_removes_a_dropped_one(make_lab: "callable",  # type: ignore[valid-type]
                                                                     tmp_path: os.PathLike[str]) -> None:
    path = _write(tmp_path)
    lab = make_lab(path)
    lab("up")
    first = _ids(lab)
    assert set(first) == {"web", "worker"}
    _write(tmp_path, body="v2")
    changed = lab("up")
    assert "h1: started web" in changed.stdout and "worker" not in changed.stdout
    second = _ids(lab)
    assert second["worker"] == first["worker"] and second["web"] != first["web"]
    assert lab("test").stdout.rstrip().endswith("1 passed, 0 failed")  # now serving v2
    _write(tmp_path, body="v2", extra="")
    assert "h1: removed worker" in lab("up").stdout
    assert set(_ids(lab)) == {"web"}


def test_exec_runs_on_a_host_and_in_a_container_with_their_exit_codes(make_lab: "callable",  # type: ignore[valid-type]
                                                                      tmp_path: os.PathLike[str]) -> None:
    lab = make_lab(_write(tmp_path))
    lab("up")
    addrs = lab("exec", "h1", "--", "ip", "-br", "addr", "show", "lan").stdout
    assert "10.248.0.10/24" in addrs
    assert lab("exec", "h1/web", "--", "hostname").stdout.strip() == "web"
    assert lab("exec", "h2", "--", "false", check=False).returncode == 1
    missing = lab("exec", "h1/nope", "--", "true", check=False)
    assert missing.returncode == 1 and "no such container: nope" in missing.stderr
    view = json.loads(lab("inspect", "--json").stdout)
    web = next(c for c in view["h1"]["containers"] if c["name"] == "web")
    assert web["state"] == "running" and web["ports"] == ["80/tcp -> 0.0.0.0:8080"] and web["addresses"]
    assert view["h2"]["links"] == {"lan": "10.248.0.20/24"}


def test_failed_up_reports_one_line_and_down_removes_the_half_built_lab(make_lab: "callable",  # type: ignore[valid-type]
                                                                        tmp_path: os.PathLike[str]) -> None:
    lab = make_lab(_write(tmp_path, extra="      broken: {cmd: [/nonexistent/program]}"))
    proc = lab("up", check=False)
    assert proc.returncode == 1
    assert "host h1 failed to come up" in proc.stderr and proc.stderr.count("\n") == 1
    assert len(lab.namespaces()) == 2 and container_pids(lab)  # web runs; broken never started
    # the make_lab teardown runs `down` and fails the test if any namespace, process or state is left


def test_test_and_exec_on_a_lab_that_is_not_up_fail_readably(make_lab: "callable",  # type: ignore[valid-type]
                                                              tmp_path: os.PathLike[str]) -> None:
    lab = make_lab(_write(tmp_path))
    for args in (("test",), ("exec", "h1", "--", "true"), ("inspect",)):
        proc = lab(*args, check=False)
        assert proc.returncode == 1 and "is not up" in proc.stderr, proc.stderr
