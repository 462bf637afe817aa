"""netkit's own import graph: packages import one way only, and only the CLI imports click.

Every ``import`` in ``netkit/`` counts, at any depth: a lazy import inside a function is as much a
dependency as one at the top (it only moves the cost).  Relative imports are resolved.  A package is
the first component under ``netkit/``; the modules directly in ``netkit/`` form one package, "base",
which every other package may use and which uses none of them.  Two entry-point modules count
with the package they open (ENTRY_POINTS).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from typing import NamedTuple

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "netkit")
BASE = "base"
# Modules that are doors into a package, not part of the one they sit in: `python -m netkit` is the
# CLI's; cni/launcher.py is where launchers written before netkit.launch existed import main from.
ENTRY_POINTS = {"netkit.__main__": "cli", "netkit.cni.launcher": "launch"}

# The target layering, highest first: a package may import the packages of later layers (and,
# without a cycle, its own layer's), never an earlier one.  "lab" runs containers through the
# runtime, hence both in one layer; the runtime and the CLI start plugins through "launch".
LAYERS: list[set[str]] = [
    {"cli"},
    {"runtime", "lab", "node"},
    {"launch"},
    {"agent"},
    {"plugins"},
    {"cni"},
    {"ipam", "firewall", "dns"},
    {"net"},
    {BASE},
]


class Import(NamedTuple):
    """One import statement's edge: module ``source`` (its file ``path``) imports ``target``."""

    path: str
    line: int
    source: str
    target: str


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(ROOT))[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _is_module(name: str) -> bool:
    """True when ``name`` (dotted, under netkit) is a module or package in the tree."""
    rel = os.path.join(os.path.dirname(ROOT), *name.split("."))
    return os.path.isfile(rel + ".py") or os.path.isfile(os.path.join(rel, "__init__.py"))


def _files() -> Iterator[str]:
    for directory, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules ``node`` imports, as dotted names (``from pkg import mod`` names pkg.mod)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolved against this module's package
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    out = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        out.append(candidate if base.startswith("netkit") and _is_module(candidate) else base)
    return out


def imports() -> list[Import]:
    """Every import in netkit/, lazy ones included."""
    out = []
    for path in _files():
        module = _module_name(path)
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in dict.fromkeys(_targets(node, module, path.endswith("__init__.py"))):
                    out.append(Import(os.path.relpath(path, os.path.dirname(ROOT)), node.lineno, module, target))
    return out


def package(module: str) -> str | None:
    """netkit's package of ``module``: the first component under netkit/, BASE for netkit's own
    modules; None outside netkit."""
    parts = module.split(".")
    if parts[0] != "netkit":
        return None
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    if len(parts) == 1 or not os.path.isdir(os.path.join(ROOT, parts[1])):
        return BASE
    return parts[1]


def _where(edge: Import) -> str:
    return f"{edge.path}:{edge.line}: {edge.source} imports {edge.target}"


def _package_edges() -> dict[tuple[str, str], list[Import]]:
    edges: dict[tuple[str, str], list[Import]] = {}
    for edge in imports():
        src, dst = package(edge.source), package(edge.target)
        if dst is not None and src != dst:
            edges.setdefault((str(src), dst), []).append(edge)
    return edges


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """Packages from ``start`` to ``goal`` along imports, fewest steps (breadth first)."""
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph.get(node, ())):
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                if nxt == goal:
                    return paths[nxt]
                queue.append(nxt)
    return None


def _cycles(edges: dict[tuple[str, str], list[Import]]) -> list[list[str]]:
    """One shortest package cycle through each import edge that lies on any, each cycle once."""
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        graph.setdefault(src, set()).add(dst)
    out: list[list[str]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for src, dst in sorted(edges):
        back = _shortest_path(graph, dst, src)
        if back is None:
            continue
        cycle = [src] + back
        key = frozenset(zip(cycle, cycle[1:]))
        if key not in seen:
            seen.add(key)
            out.append(cycle)
    return out


def test_no_package_imports_another_that_imports_it_back() -> None:
    # Imports out of base are left to the next test: every cycle through base has one, and each
    # would otherwise be listed here once more for every package that imports base.
    edges = {step: found for step, found in _package_edges().items() if step[0] != BASE}
    problems = []
    for cycle in _cycles(edges):
        problems.append("cycle " + " -> ".join(cycle) + ":")
        for step in zip(cycle, cycle[1:]):
            found = edges[step]
            problems += [f"  {_where(e)}" for e in found[:3]]
            if len(found) > 3:
                problems.append(f"  ... and {len(found) - 3} more {' -> '.join(step)} imports")
    assert not problems, "\n".join(problems)


def test_base_modules_import_no_package() -> None:
    found = [_where(e) for (src, _), es in sorted(_package_edges().items()) if src == BASE for e in es]
    assert not found, "modules directly in netkit/ must import no netkit package:\n" + "\n".join(found)


def test_only_the_cli_imports_click() -> None:
    found = [_where(e) for e in imports()
             if e.target.split(".")[0] == "click" and package(e.source) != "cli"]
    assert not found, "click is imported outside netkit/cli/:\n" + "\n".join(found)


def test_packages_import_only_the_layers_below_them() -> None:
    layer = {name: n for n, names in enumerate(LAYERS) for name in names}
    present = {package(_module_name(path)) for path in _files()}
    unplaced = sorted(str(p) for p in present if p not in layer)
    assert not unplaced, f"packages missing from LAYERS in {__file__}: {', '.join(unplaced)}"
    found = [_where(e) for (src, dst), es in sorted(_package_edges().items())
             if layer[dst] < layer[src] for e in es]
    assert not found, "imports against the layering (" + " -> ".join("/".join(sorted(n)) for n in LAYERS) \
        + "):\n" + "\n".join(found)
