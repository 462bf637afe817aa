"""``lab graph``: the scenario as a picture — Mermaid text, Graphviz DOT, and SVG/PNG through ``dot``.

Both texts come from one list of nodes and edges: hosts (boxes, grouped with their containers),
links (ellipses with their subnet) and the host's address on each link as the edge label.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import NamedTuple

from netkit import errors
from netkit.lab.scenario import Container, Scenario
from netkit.lab.serve import serve_ports

FORMATS = ("mermaid", "dot", "svg", "png")


class _Node(NamedTuple):
    id: str
    label: list[str]
    shape: str  # host | container | link


class _Edge(NamedTuple):
    a: str
    b: str
    label: str
    dashed: bool = False


def _id(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def _container_label(c: Container) -> list[str]:
    what = "serve " + ", ".join(f"{k} {'/'.join(map(str, serve_ports(c.serve, k)))}" for k in c.serve
                                 if k in ("http", "tcp", "udp", "proxy")) if c.serve else " ".join(c.cmd)[:32]
    return [c.name, f"net: {', '.join(c.nets)}", *(f"alias: {a}" for a in c.aliases), *(f"-p {p}" for p in c.ports),
            what]


def _model(sc: Scenario) -> tuple[dict[str, list[_Node]], list[_Node], list[_Edge]]:
    """Per host: its node and its containers' nodes; the link nodes; every edge."""
    hosts: dict[str, list[_Node]] = {}
    edges: list[_Edge] = []
    for h in sc.hosts.values():
        label = [h.name, *(f"route {r.to} via {r.via}" for r in h.routes)]
        hosts[h.name] = [_Node(_id("h", h.name), label, "host")]
        for c in h.containers.values():
            hosts[h.name].append(_Node(_id("c", h.name, c.name), _container_label(c), "container"))
            owner = c.net.split(":", 1)[1] if c.net.startswith("container:") else ""
            edges.append(_Edge(_id("c", h.name, owner) if owner else _id("h", h.name), _id("c", h.name, c.name),
                               "shares netns" if owner else "", dashed=True))
    link_nodes = [_Node(_id("l", link.name), [link.name, str(link.subnet), *([str(link.subnet6)] if link.subnet6 else [])],
                        "link") for link in sc.links.values()]
    for link in sc.links.values():
        for member in link.members:
            h = sc.hosts[member]
            label = " ".join(str(a[link.name].ip) for a in (h.addresses, h.addresses6) if link.name in a)
            edges.append(_Edge(_id("h", member), _id("l", link.name), label))
    return hosts, link_nodes, edges


def mermaid(sc: Scenario) -> str:
    """A Mermaid flowchart (GitHub renders it in Markdown)."""
    hosts, link_nodes, edges = _model(sc)

    def node(n: _Node) -> str:
        text = "<br/>".join(n.label).replace('"', "'")
        return {"host": f'{n.id}["{text}"]', "container": f'{n.id}("{text}")', "link": f'{n.id}(["{text}"])'}[n.shape]

    out = ["flowchart TB"]
    for name, nodes in hosts.items():
        out.append(f'  subgraph {_id("g", name)}["host {name}"]')
        out += [f"    {node(n)}" for n in nodes]
        out.append("  end")
    out += [f"  {node(n)}" for n in link_nodes]
    for e in edges:
        arrow = "-.-" if e.dashed else "---"
        out.append(f"  {e.a} {arrow}{f'|{e.label}|' if e.label else ''} {e.b}")
    return "\n".join(out) + "\n"


def dot(sc: Scenario) -> str:
    """Graphviz DOT text."""
    hosts, link_nodes, edges = _model(sc)
    shapes = {"host": "box3d", "container": "component", "link": "ellipse"}

    def node(n: _Node) -> str:
        label = "\\n".join(n.label).replace('"', '\\"')
        return f'{n.id} [shape={shapes[n.shape]}, label="{label}"];'

    out = [f'graph "{sc.name}" {{', "  rankdir=TB; nodesep=0.5; ranksep=0.7;", '  node [fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for name, nodes in hosts.items():
        out += [f"  subgraph cluster_{_id(name)} {{", f'    label="host {name}"; style=rounded;']
        out += [f"    {node(n)}" for n in nodes]
        out.append("  }")
    out += [f"  {node(n)}" for n in link_nodes]
    for e in edges:
        attrs = [f'label="{e.label}"'] if e.label else []
        attrs += ["style=dashed"] if e.dashed else []
        out.append(f"  {e.a} -- {e.b}{' [' + ', '.join(attrs) + ']' if attrs else ''};")
    return "\n".join(out) + "\n}\n"


def render(sc: Scenario, fmt: str) -> bytes:
    """The graph in ``fmt`` (one of FORMATS); svg and png need Graphviz's ``dot``."""
    if fmt == "mermaid":
        return mermaid(sc).encode()
    if fmt == "dot":
        return dot(sc).encode()
    exe = shutil.which("dot")
    if exe is None:
        raise errors.CNIError(errors.INTERNAL, f"{fmt} needs Graphviz's dot, which is not installed",
                              "apt-get install graphviz, or use --format mermaid|dot")
    # dot is the renderer (no Python library for Graphviz layout is a dependency); argv, no shell.
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot(sc).encode(), capture_output=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise errors.CNIError(errors.INTERNAL, "dot failed", proc.stderr.decode(errors="replace").strip())
    return proc.stdout
