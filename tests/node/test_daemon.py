"""``netkit node --nodes-file`` as it runs: one process per node namespace on one segment, a real
packet over the routes they made, a node removed from the file losing its routes on the others,
bad input logged once while the last good facts stay, and nothing left when they stop."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from netkit.ipam import config as ipam_config
from netkit.net import netns
from netkit.node import conflist, routes
from tests import sandbox as sb
from tests.node.conftest import Cluster, ns_path
from tests.waiting import PATIENCE, until

CIDRS = {"n1": "10.244.1.0/24", "n2": "10.244.2.0/24", "n3": "10.244.3.0/24"}
CLUSTER = "10.244.0.0/16"


def _write(path: str, cluster: Cluster, names: list[str], extra: list[dict[str, object]] | None = None) -> None:
    entries: list[dict[str, object]] = [{"name": n, "internalIP": cluster.nodes[n][1], "podCIDRs": [CIDRS[n]]}
                                        for n in names]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump({"nodes": entries + (extra or [])}, f)
    os.replace(tmp, path)


def _kept(cluster: Cluster, name: str) -> dict[str, str]:
    out = cluster.nodes[name][0].run("ip", "-j", "route", "show", "proto", str(routes.PROTOCOL)).stdout
    return {r["dst"]: r.get("gateway", "") for r in json.loads(out or "[]")}


def _spawn(cluster: Cluster, base: str, name: str, *extra: str) -> subprocess.Popen[bytes]:
    """`netkit node` as node ``name`` in its namespace, reading ``base``/nodes.yaml, logging to
    ``base``/``name``.log."""
    host = cluster.nodes[name][0]
    with open(os.path.join(base, f"{name}.log"), "wb") as log:
        return subprocess.Popen(
            [*host.enter(), sys.executable, "-m", "netkit", "node", "--nodes-file", os.path.join(base, "nodes.yaml"),
             "--node-name", name, "--conf-dir", os.path.join(base, name), "--interval", "0.05",
             "--ready-file", os.path.join(base, f"{name}.ready"), *extra], stderr=log, stdout=log)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["nftables", "iptables"])
def daemons(request: pytest.FixtureRequest, cluster: Cluster,
            tmp_path: os.PathLike[str]) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """`netkit node` in every node namespace, reading one nodes file, masquerading through either
    firewall backend what leaves CLUSTER; stopped (SIGTERM) after."""
    base = str(tmp_path)
    _write(os.path.join(base, "nodes.yaml"), cluster, ["n1", "n2", "n3"])
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in cluster.nodes:
            procs[name] = _spawn(cluster, base, name, "--cluster-cidr", CLUSTER, "--firewall-backend", request.param)
        yield procs
    finally:
        _stop(list(procs.values()))


def _log(tmp_path: os.PathLike[str], name: str) -> list[str]:
    with open(os.path.join(str(tmp_path), f"{name}.log"), encoding="utf-8") as f:
        return f.read().splitlines()


def test_three_nodes_route_to_each_other_and_forget_a_removed_node(
        cluster: Cluster, daemons: dict[str, subprocess.Popen[bytes]], tmp_path: os.PathLike[str],
        request: pytest.FixtureRequest) -> None:
    base = str(tmp_path)
    for name in cluster.nodes:
        until(lambda: os.path.exists(os.path.join(base, f"{name}.ready")), f"{name} ready")
    with open(os.path.join(base, "n2", conflist.FILE_NAME), encoding="utf-8") as f:
        written = json.load(f)
    backend = request.node.callspec.params["daemons"]
    assert written == conflist.build((ipaddress.ip_network(CIDRS["n2"]),), firewall=backend)
    # The plugins use the node's firewall backend (the key they read), not their own guess.
    assert written["plugins"][0]["firewallBackend"] == backend  # type: ignore[index]
    # The ipam part is what netkit-ipam accepts.
    parsed = ipam_config.parse(written["plugins"][0])  # type: ignore[index]
    assert [str(r.subnet) for s in parsed.range_sets for r in s] == [CIDRS["n2"]]
    for name in cluster.nodes:
        others = {CIDRS[o]: cluster.nodes[o][1] for o in cluster.nodes if o != name}
        until(lambda: _kept(cluster, name) == others, f"{name}'s routes")
    # A packet: n1 reaches an address of n2's pod subnet through the route n1's process made.
    n2 = cluster.nodes["n2"][0]
    n2.run("ip", "addr", "add", "10.244.2.10/32", "dev", "lo", check=True)  # stands in for a pod's address
    assert cluster.nodes["n1"][0].run("ping", "-c1", "-W2", "10.244.2.10").returncode == 0
    # n3 leaves the cluster: the others drop its route.
    _write(os.path.join(base, "nodes.yaml"), cluster, ["n1", "n2", "n3"][:2])
    for name in ("n1", "n2"):
        until(lambda: CIDRS["n3"] not in _kept(cluster, name), f"{name} forgets n3")
    assert f"netkit node: route {CIDRS['n3']} via {cluster.nodes['n3'][1]} removed" in _log(tmp_path, "n1")
    assert all(p.poll() is None for p in daemons.values())
    for proc in daemons.values():
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=PATIENCE) == 0
    assert not [f for f in os.listdir(base) if f.endswith(".ready")]


def test_bad_input_is_logged_once_the_last_facts_stay_and_a_fix_converges(
        cluster: Cluster, daemons: dict[str, subprocess.Popen[bytes]], tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    nodes_file = os.path.join(base, "nodes.yaml")
    until(lambda: len(_kept(cluster, "n1")) == 2, "n1's routes")
    before = _kept(cluster, "n1")
    with open(nodes_file + ".tmp", "w", encoding="utf-8") as f:
        f.write("nodes: [unclosed\n")
    os.replace(nodes_file + ".tmp", nodes_file)
    until(lambda: any("not YAML/JSON" in line for line in _log(tmp_path, "n1")), "the broken file logged")
    time.sleep(0.5)  # several polls of the same broken file
    assert sum("not YAML/JSON" in line for line in _log(tmp_path, "n1")) == 1
    assert _kept(cluster, "n1") == before
    # A node without podCIDR, one whose podCIDR overlaps a host route, one not on-link: each one line.
    cluster.nodes["n1"][0].run("ip", "route", "add", "10.250.5.0/25", "via", "192.168.77.12", check=True)
    _write(nodes_file, cluster, ["n1", "n2"], extra=[
        {"name": "n4", "internalIP": "192.168.77.14"},
        {"name": "n5", "internalIP": "192.168.77.15", "podCIDRs": ["10.250.5.0/24"]},
        {"name": "n6", "internalIP": "172.31.0.6", "podCIDRs": ["10.244.6.0/24"]},
        {"name": "n7", "internalIP": "192.168.77.17", "podCIDRs": ["not-a-cidr"]}])
    until(lambda: _kept(cluster, "n1") == {CIDRS["n2"]: cluster.nodes["n2"][1]}, "n3 forgotten")
    time.sleep(0.5)
    lines = _log(tmp_path, "n1")
    for needle in ("node n4: no podCIDR yet", "node n5: podCIDR 10.250.5.0/24 overlaps host route 10.250.5.0/25",
                   "node n6: InternalIP 172.31.0.6 is not on-link", "node n7: podCIDR not-a-cidr"):
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    # Fixed: n6 moves onto the segment; its route appears.
    _write(nodes_file, cluster, ["n1", "n2"], extra=[
        {"name": "n6", "internalIP": "192.168.77.16", "podCIDRs": ["10.244.6.0/24"]}])
    until(lambda: _kept(cluster, "n1").get("10.244.6.0/24") == "192.168.77.16", "n6 routed")
    assert all(p.poll() is None for p in daemons.values())


def test_own_node_without_podcidr_writes_no_conflist_and_is_not_ready_until_it_has_one(
        cluster: Cluster, daemons: dict[str, subprocess.Popen[bytes]], tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    nodes_file = os.path.join(base, "nodes.yaml")
    # Before n1 is ready this is racy, so restart the story from n1's side: drop its podCIDR, then check
    # the conflist it wrote stays as it was (never half-written, never removed) and it comes back.
    until(lambda: os.path.exists(os.path.join(base, "n1.ready")), "n1 ready")
    _write(nodes_file, cluster, ["n2", "n3"], extra=[{"name": "n1", "internalIP": cluster.nodes["n1"][1]}])
    until(lambda: any("(this node) has no podCIDR yet" in line for line in _log(tmp_path, "n1")), "logged")
    _write(nodes_file, cluster, ["n2", "n3"],
           extra=[{"name": "n1", "internalIP": cluster.nodes["n1"][1], "podCIDRs": ["10.244.11.0/24"]}])
    path = os.path.join(base, "n1", conflist.FILE_NAME)
    until(lambda: "10.244.11.0/24" in open(path, encoding="utf-8").read(), "rewritten")
    until(lambda: _kept(cluster, "n2").get("10.244.11.0/24") == cluster.nodes["n1"][1], "others route the new subnet")


def _peer_seen(cluster: Cluster, src: str, addr: str, port: int) -> str:
    """The source address a server at ``addr:port`` saw for a connection from n1's ``src``."""
    with netns.entered(ns_path(cluster.nodes["n1"][0])):
        conn = socket.socket()
    with conn:
        conn.settimeout(5)
        conn.bind((src, 0))
        conn.connect((addr, port))
        return conn.recv(200).decode().split()[1]


def test_only_traffic_leaving_the_cluster_cidr_is_masqueraded(
        cluster: Cluster, daemons: dict[str, subprocess.Popen[bytes]], tmp_path: os.PathLike[str]) -> None:
    for name in cluster.nodes:
        until(lambda: len(_kept(cluster, name)) == 2, f"{name}'s routes")
    until(lambda: any("masquerade of 10.244.1.0/24 leaving 10.244.0.0/16" in line
                                              for line in _log(tmp_path, "n1")), "masquerade in place")
    n1, n2 = cluster.nodes["n1"][0], cluster.nodes["n2"][0]
    n1.run("ip", "addr", "add", "10.244.1.10/32", "dev", "lo", check=True)  # a pod of n1 (source)
    n2.run("ip", "addr", "add", "10.244.2.10/32", "dev", "lo", check=True)  # a pod of n2
    cluster.segment.run("ip", "addr", "add", "192.168.77.1/24", "dev", "br0", check=True)  # outside
    servers = [sb.Namespace(n2.name).serve("pod", 8080), sb.Namespace(cluster.segment.name).serve("outside", 8080)]
    try:
        assert _peer_seen(cluster, "10.244.1.10", "10.244.2.10", 8080) == "10.244.1.10"  # kept: inside
        assert _peer_seen(cluster, "10.244.1.10", "192.168.77.1", 8080) == cluster.nodes["n1"][1]  # leaving
    finally:
        for server in servers:
            server.kill()
            server.wait()


def test_a_node_without_podcidr_from_a_cold_start_writes_no_conflist_is_not_ready_then_converges(
        cluster: Cluster, tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    nodes_file = os.path.join(base, "nodes.yaml")
    _write(nodes_file, cluster, ["n2"], extra=[{"name": "n1", "internalIP": cluster.nodes["n1"][1]}])
    ready = os.path.join(base, "n1.ready")
    with open(ready, "w", encoding="utf-8") as f:
        f.write("ready\n")  # what a crashed earlier run left
    proc = _spawn(cluster, base, "n1")
    try:
        until(lambda: any("(this node) has no podCIDR yet" in line for line in _log(tmp_path, "n1")), "logged")
        until(lambda: _kept(cluster, "n1") == {CIDRS["n2"]: cluster.nodes["n2"][1]}, "n2 routed")
        assert not os.path.exists(os.path.join(base, "n1", conflist.FILE_NAME))
        assert not os.path.exists(ready)
        _write(nodes_file, cluster, ["n1", "n2"])
        until(lambda: os.path.exists(ready), "ready")
        with open(os.path.join(base, "n1", conflist.FILE_NAME), encoding="utf-8") as f:
            assert json.load(f) == conflist.build((ipaddress.ip_network(CIDRS["n1"]),))
        assert proc.poll() is None
    finally:
        _stop([proc])


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_masquerade_is_verified_at_resync_and_logged_only_when_put_back(
        cluster: Cluster, tmp_path: os.PathLike[str], backend: str) -> None:
    base = str(tmp_path)
    _write(os.path.join(base, "nodes.yaml"), cluster, ["n1", "n2"])
    proc = _spawn(cluster, base, "n1", "--cluster-cidr", CLUSTER, "--firewall-backend", backend, "--resync", "0.3")
    line = "masquerade of 10.244.1.0/24 leaving 10.244.0.0/16"
    try:
        until(lambda: any(line in entry for entry in _log(tmp_path, "n1")), "masquerade")
        time.sleep(1.5)  # several resyncs
        assert sum(line in entry for entry in _log(tmp_path, "n1")) == 1, _log(tmp_path, "n1")
        # Someone flushes netkit's rules: the next resync finds the group gone and puts it back.
        host = cluster.nodes["n1"][0]
        if backend == "nftables":
            host.run("nft", "delete", "table", "inet", "netkit", check=True)
        else:
            host.run("iptables-legacy", "-t", "nat", "-F", check=True)
        until(lambda: sum(line in entry for entry in _log(tmp_path, "n1")) == 2, "put back")
        assert proc.poll() is None
    finally:
        _stop([proc])
