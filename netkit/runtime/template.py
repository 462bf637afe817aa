"""The part of Go's text/template that scripts written for ``docker inspect --format`` use.

Actions: ``{{.A.B}}`` (``.`` is the value), ``{{$v.A}}``, ``{{index X "k" ...}}``, ``{{json X}}``,
``{{len X}}``, ``{{join X ","}}``, ``{{upper X}}``, ``{{lower X}}``, ``{{print X ...}}``, ``{{println X ...}}``,
parentheses with fields after them (``{{(index .M "k").IPAddress}}``), pipes (``{{.Name | json}}``),
``{{range [$k, ]$v := X}}...{{else}}...{{end}}``, ``{{range X}}``, ``{{if X}}...{{else}}...{{end}}``,
``{{with X}}...{{end}}`` and the trim markers ``{{-`` / ``-}}``.  Values print as Go prints them (a
missing key as ``<no value>``, a list as ``[a b]``, a map as ``map[k:v]``).  Anything else is a
``TemplateError`` naming what is not supported, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from netkit.runtime.state import ContainerError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>:=|[()|,])'
                    r'|(?P<var>\$\w*(?:\.\w+)*)|(?P<field>(?:\.\w+)+|\.)|(?P<ident>[A-Za-z_]\w*))')
_MISSING = object()  # a key the map does not have: prints as <no value>


class TemplateError(ContainerError):
    """A format the subset does not parse or cannot run (the CLI prints it in one line)."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(f"template: {msg}", details)


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipeline: list[list[Any]]  # commands separated by |, each a list of operands
    declare: list[str] = field(default_factory=list)


@dataclass
class _Block:
    kind: str  # range | if | with
    action: _Action
    body: list[Any] = field(default_factory=list)
    otherwise: list[Any] = field(default_factory=list)


@dataclass
class _Func:
    name: str


@dataclass
class _Field:
    base: Any  # None: the dot; a "$name" string; or a parenthesised pipeline
    names: list[str]


def _tokens(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:].strip()[:20]!r} in {{{{{src}}}}}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _parse_action(src: str) -> _Action:
    toks = _tokens(src)
    declare: list[str] = []
    if ":=" in [t[1] for t in toks if t[0] == "punct"]:
        i = [t[1] for t in toks].index(":=")
        declare = [t[1] for t in toks[:i] if t[0] == "var"]
        if not declare or any(t[0] not in ("var", "punct") for t in toks[:i]):
            raise TemplateError(f"bad variable declaration in {{{{{src}}}}}")
        toks = toks[i + 1:]
    pipeline, pos = _pipeline(toks, 0, src)
    if pos != len(toks):
        raise TemplateError(f"unexpected {toks[pos][1]!r} in {{{{{src}}}}}")
    return _Action(pipeline, declare)


def _pipeline(toks: list[tuple[str, str]], pos: int, src: str) -> tuple[list[list[Any]], int]:
    stages: list[list[Any]] = [[]]
    while pos < len(toks):
        kind, text = toks[pos]
        if text == ")":
            break
        pos += 1
        if text == "|":
            stages.append([])
        elif text == "(":
            inner, pos = _pipeline(toks, pos, src)
            if pos >= len(toks) or toks[pos][1] != ")":
                raise TemplateError(f"unclosed '(' in {{{{{src}}}}}")
            pos += 1
            names: list[str] = []
            if pos < len(toks) and toks[pos][0] == "field" and toks[pos][1] != ".":
                names = toks[pos][1].split(".")[1:]
                pos += 1
            stages[-1].append(_Field(inner, names))
        elif kind == "str":
            stages[-1].append(json.loads(text) if text[0] == '"' else text[1:-1])
        elif kind == "num":
            stages[-1].append(float(text) if "." in text else int(text))
        elif kind == "field":
            stages[-1].append(_Field(None, [n for n in text.split(".") if n]))
        elif kind == "var":
            name, *names = text.split(".")
            stages[-1].append(_Field(name, names))
        elif kind == "ident":
            if text in ("true", "false", "nil"):
                stages[-1].append({"true": True, "false": False, "nil": None}[text])
            elif text in _FUNCS:
                stages[-1].append(_Func(text))
            else:
                raise TemplateError(f'function "{text}" is not supported', f"supported: {', '.join(sorted(_FUNCS))}")
        else:
            raise TemplateError(f"unexpected {text!r} in {{{{{src}}}}}")
    if any(not c for c in stages):
        raise TemplateError(f"empty command in {{{{{src}}}}}")
    return stages, pos


def parse(fmt: str) -> list[Any]:
    """The template ``fmt`` as a tree; TemplateError when it is outside the subset."""
    root: list[Any] = []
    stack: list[tuple[_Block, list[Any]]] = []  # open blocks, each with the body it sits in
    body = root
    pos = 0
    for m in _ACTION.finditer(fmt):
        text = fmt[pos:m.start()]
        if "{{" in text:
            raise TemplateError("unclosed action")
        if m.group(1):
            text = text.rstrip()
        if text:
            body.append(_Text(text))
        pos = m.end()
        if m.group(3):
            rest = fmt[pos:]
            pos += len(rest) - len(rest.lstrip())
        src = m.group(2).strip()
        word = src.split(None, 1)[0] if src else ""
        if src.startswith("/*"):
            continue  # a comment
        if word in ("range", "if", "with"):
            block = _Block(word, _parse_action(src[len(word):]))
            body.append(block)
            stack.append((block, body))
            body = block.body
        elif word == "else":
            if not stack or src != "else":
                raise TemplateError("{{else}} outside a block" if not stack else f"{{{{{src}}}}} is not supported")
            body = stack[-1][0].otherwise
        elif word == "end":
            if not stack:
                raise TemplateError("unexpected {{end}}")
            body = stack.pop()[1]
        elif word in ("define", "template", "block", "break", "continue"):
            raise TemplateError(f"{{{{{word}}}}} is not supported")
        else:
            body.append(_parse_action(src))
    if stack:
        raise TemplateError(f"unexpected EOF: {{{{{stack[-1][0].kind}}}}} has no {{{{end}}}}")
    tail = fmt[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action")
    if tail:
        body.append(_Text(tail))
    return root


def show(value: Any) -> str:
    """``value`` printed as Go's fmt prints the decoded JSON docker inspect formats."""
    if value is _MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{show(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, _MISSING) if isinstance(key, str) else _MISSING
        elif isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(value):
                raise TemplateError(f"error calling index: index out of range: {key}")
            value = value[key]
        elif value is None or value is _MISSING:
            return _MISSING
        else:
            raise TemplateError(f"error calling index: cannot index {show(value)} with {show(key)}")
    return value


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, list):
        raise TemplateError("join needs a list")
    return sep.join(show(i) for i in items)


def _json(value: Any) -> str:
    return json.dumps(None if value is _MISSING else value, separators=(",", ":"))


def _len(value: Any) -> int:
    if not isinstance(value, (list, dict, str)):
        raise TemplateError(f"len of {show(value)}")
    return len(value)


_FUNCS: dict[str, Callable[..., Any]] = {
    "index": _index, "json": _json, "len": _len, "join": _join,
    "upper": lambda s: show(s).upper(), "lower": lambda s: show(s).lower(), "title": lambda s: show(s).title(),
    "print": lambda *a: "".join(show(x) for x in a), "println": lambda *a: " ".join(show(x) for x in a) + "\n",
}


class _Scope:
    def __init__(self, dot: Any, variables: dict[str, Any]) -> None:
        self.dot, self.vars = dot, variables


def _operand(op: Any, scope: _Scope) -> Any:
    if isinstance(op, _Field):
        if op.base is None:
            value = scope.dot
        elif isinstance(op.base, str):
            if op.base not in scope.vars:
                raise TemplateError(f"undefined variable: {op.base}")
            value = scope.vars[op.base]
        else:
            value = _run_pipeline(op.base, scope)
        for name in op.names:
            if isinstance(value, dict):
                value = value.get(name, _MISSING)
            elif value is None or value is _MISSING:
                return _MISSING
            else:
                raise TemplateError(f"can't evaluate field {name} in {show(value)}")
        return value
    return op


def _source(op: Any) -> str:
    """An operand as it was written in the template (``.Name``, ``$x.IP``, ``"text"``), for errors."""
    if not isinstance(op, _Field):
        return json.dumps(op) if isinstance(op, str) else show(op)
    base = "" if op.base is None else op.base if isinstance(op.base, str) else "(...)"
    return base + ("".join("." + n for n in op.names) if op.names else ("." if op.base is None else ""))


def _run_pipeline(pipeline: list[list[Any]], scope: _Scope) -> Any:
    value: Any = _MISSING
    for i, command in enumerate(pipeline):
        head, *args = command
        if isinstance(head, _Func):
            operands = [_operand(a, scope) for a in args] + ([value] if i else [])
            try:
                value = _FUNCS[head.name](*operands)
            except TypeError:
                raise TemplateError(f"wrong number of arguments for {head.name}") from None
        elif args or i:
            raise TemplateError(f"{_source(head)} is not a function")
        else:
            value = _operand(head, scope)
    return value


def _truth(value: Any) -> bool:
    return value not in (_MISSING, None, False, 0, "") and not (isinstance(value, (list, dict)) and not value)


def _execute(nodes: list[Any], scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Action):
            value = _run_pipeline(node.pipeline, scope)
            if node.declare:
                scope.vars[node.declare[-1]] = value
            else:
                out.append(show(value))
        else:
            _block(node, scope, out)


def _block(block: _Block, scope: _Scope, out: list[str]) -> None:
    value = _run_pipeline(block.action.pipeline, scope)
    if block.kind == "if":
        _execute(block.body if _truth(value) else block.otherwise, scope, out)
    elif block.kind == "with":
        if _truth(value):
            _execute(block.body, _Scope(value, dict(scope.vars)), out)
        else:
            _execute(block.otherwise, scope, out)
    else:
        if isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value in (None, _MISSING):
            items = []
        else:
            raise TemplateError(f"range can't iterate over {show(value)}")
        if not items:
            _execute(block.otherwise, scope, out)
        names = block.action.declare
        for key, item in items:
            variables = dict(scope.vars)
            if len(names) == 2:
                variables[names[0]], variables[names[1]] = key, item
            elif names:
                variables[names[0]] = item
            _execute(block.body, _Scope(item, variables), out)


def execute(tree: list[Any], value: Any) -> str:
    """A parsed template (``parse``) executed on ``value``: the JSON-decoded object docker inspect formats."""
    out: list[str] = []
    _execute(tree, _Scope(value, {"$": value}), out)
    return "".join(out)


def render(fmt: str, value: Any) -> str:
    """``fmt`` executed on ``value``."""
    return execute(parse(fmt), value)
