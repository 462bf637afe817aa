"""The k8s-nodes scenario's cluster changing under `lab up`: a host that stops being a node loses its
`netkit node` and pods, and the other nodes' processes remove their routes to its pod subnet."""

from __future__ import annotations

import json
import os
from typing import Callable

import yaml

from tests.lab.conftest import Lab, scenario
from tests.waiting import until


def _node_routes(lab: Lab, host: str) -> dict[str, str]:
    """The routes `netkit node` keeps on ``host`` (its route protocol): destination -> gateway."""
    out = lab("exec", host, "--", "ip", "-j", "route", "show", "proto", "78").stdout
    return {r["dst"]: r["gateway"] for r in json.loads(out or "[]")}


def test_a_host_that_stops_being_a_node_loses_its_routes_on_the_other_nodes(
        make_lab: Callable[[str], Lab], tmp_path: os.PathLike[str]) -> None:
    lab = make_lab(scenario("k8s-nodes"))
    lab("up")
    assert _node_routes(lab, "node1") == {"10.244.2.0/24": "10.247.0.12", "10.244.3.0/24": "10.247.0.13"}
    assert _node_routes(lab, "outside") == {}  # not a node: no process, no routes

    with open(scenario("k8s-nodes"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    del doc["hosts"]["node3"]["kubernetes"], doc["hosts"]["node3"]["containers"]
    doc["checks"] = [c for c in doc["checks"] if "node3" not in c["from"] + c["to"]]
    smaller = os.path.join(str(tmp_path), "k8s-nodes.yaml")
    with open(smaller, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
    out = lab("up", path=smaller).stdout
    assert "node3: removed web3" in out and "node3: stopped netkit node" in out, out
    # `lab up` returns once each host's file is rewritten; the processes re-read it within their interval.
    for host in ("node1", "node2"):
        until(lambda: "10.244.3.0/24" not in _node_routes(lab, host), f"{host} forgets node3")
    assert _node_routes(lab, "node1") == {"10.244.2.0/24": "10.247.0.12"}
    log = os.path.join(lab.root("node1"), "kubernetes", "node.log")
    with open(log, encoding="utf-8") as f:
        assert "netkit node: route 10.244.3.0/24 via 10.247.0.13 removed\n" in f.read()
    assert lab("test", path=smaller, check=False).returncode == 0
