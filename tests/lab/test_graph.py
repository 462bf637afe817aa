"""`lab graph`: Mermaid and DOT texts of the topology, and a real picture through Graphviz."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from netkit.lab import graph, scenario
from tests.lab.conftest import scenario as shipped


def test_mermaid_shows_every_host_container_link_and_address() -> None:
    sc = scenario.load(shipped("edge-node"))
    text = graph.mermaid(sc)
    assert text.startswith("flowchart TB\n")
    for host in sc.hosts:
        assert f'subgraph g_{host}["host {host}"]' in text
    assert 'c_edge_lb("lb<br/>net: bridge<br/>-p 80:8000<br/>serve proxy 8000")' in text
    assert 'l_internal(["internal<br/>10.249.1.0/24"])' in text
    assert "h_app1 ---|10.249.1.31| l_internal" in text
    assert text.count("---|") == sum(len(link.members) for link in sc.links.values())


def test_dot_renders_to_svg_and_png_with_graphviz() -> None:
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot is missing: ./setup.sh installs it")
    sc = scenario.load(shipped("network-modes"))
    svg = graph.render(sc, "svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for label in ("host host1", "sidecar", "10.251.0.0/24"):
        assert label in svg
    assert graph.render(sc, "png").startswith(b"\x89PNG\r\n\x1a\n")


def test_graph_command_writes_the_requested_format(tmp_path: os.PathLike[str]) -> None:
    out = f"{tmp_path}/lab.dot"
    subprocess.run([sys.executable, "-m", "netkit", "lab", "graph", shipped("isolation"), "--format", "dot",
                    "-o", out], check=True)
    with open(out, encoding="utf-8") as f:
        text = f.read()
    assert text.startswith('graph "isolation" {') and "cluster_host1" in text and text.rstrip().endswith("}")
