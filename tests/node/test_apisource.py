"""The Kubernetes API source against a stand-in for the API server (harness/kubeapi.py: the real
one cannot run here), through the official client: list, watch events, a dropped watch and failing
requests logged as lines while the last facts stay, then convergence by a new list."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from harness.hostns import Netns
from netkit.net import netns
from netkit.node import apisource, routes, snapshot
from harness.kubeapi import Server, StandInApi, kubeconfig, node_object
from tests.node.conftest import Cluster, ns_path
from tests.waiting import PATIENCE


@pytest.fixture
def api(tmp_path: os.PathLike[str]) -> Iterator[tuple[StandInApi, str]]:
    stand_in = StandInApi()
    stand_in.put(node_object("n1", "192.168.77.11", ["10.244.1.0/24"]))
    stand_in.put(node_object("n2", "192.168.77.12", ["10.244.2.0/24", "fd10:244:2::/64"]))
    server = Server(stand_in, socket.create_server(("127.0.0.1", 0)))
    path = os.path.join(str(tmp_path), "kubeconfig")
    with open(path, "w", encoding="utf-8") as f:
        f.write(kubeconfig(server.url))
    try:
        yield stand_in, path
    finally:
        stand_in.drop()
        server.close()


def _until(source: apisource.ApiSource, wanted: Callable[[snapshot.Snapshot], bool],
           errors: list[str]) -> snapshot.Snapshot:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            got = source.poll()
        except snapshot.SourceError as exc:
            errors.append(str(exc))
            got = None
        if got is not None and wanted(got):
            return got
        assert time.monotonic() < deadline, "the source never delivered the expected nodes"
        time.sleep(0.02)


def test_list_then_watch_events_then_a_dropped_watch_converges_by_a_new_list(api: tuple[StandInApi, str]) -> None:
    stand_in, path = api
    source = apisource.ApiSource(apisource.load_config(path), retry=0.1)
    source.start()
    errors: list[str] = []
    try:
        snap = _until(source, lambda s: set(s.nodes) == {"n1", "n2"}, errors)
        assert [str(c) for c in snap.nodes["n2"].pod_cidrs] == ["10.244.2.0/24", "fd10:244:2::/64"]
        assert str(snap.nodes["n1"].internal_ips[0]) == "192.168.77.11"
        assert any("watch=true" in r for r in stand_in.requests)
        # Watch events: a node added, one changed, one without a podCIDR (refused, the rest usable).
        stand_in.put(node_object("n3", "192.168.77.13", ["10.244.3.0/24"]))
        stand_in.put(node_object("n1", "192.168.77.21", ["10.244.1.0/24"]))
        stand_in.put(node_object("n4", "192.168.77.14", []))
        snap = _until(source, lambda s: "n3" in s.nodes and str(s.nodes["n1"].internal_ips[0]) == "192.168.77.21"
                      and "n4" in s.nodes, errors)
        assert not snap.nodes["n4"].pod_cidrs
        stand_in.delete("n4")
        _until(source, lambda s: "n4" not in s.nodes, errors)
        assert not errors
        # The watch drops, two requests fail, and n3 is deleted meanwhile (no watch sees it): the
        # failures come as lines, and the new list converges.
        lists = sum("watch" not in r for r in stand_in.requests)
        stand_in.drop(fail_next=2)
        stand_in.delete("n3")
        snap = _until(source, lambda s: set(s.nodes) == {"n1", "n2"}, errors)
        # The words of the drop are urllib3's (they differ between its versions): a line about the watch.
        assert errors[0].startswith("Kubernetes API, watch of nodes: ")
        assert "Kubernetes API, list of nodes: HTTP 500 Internal Server Error" in errors
        assert sum("watch" not in r for r in stand_in.requests) > lists
    finally:
        stand_in.drop()
        source.stop(wait=PATIENCE)


def test_netkit_node_on_the_api_routes_follow_watch_events_and_a_dropped_watch_converges(
        cluster: Cluster, tmp_path: os.PathLike[str]) -> None:
    """`netkit node --kubeconfig` in node n1's namespace, the stand-in listening there too."""
    base = str(tmp_path)
    stand_in = StandInApi()
    for name, (_, ip) in cluster.nodes.items():
        stand_in.put(node_object(name, ip, [f"10.244.{name[1:]}.0/24"]))
    n1 = cluster.nodes["n1"][0]
    with netns.entered(ns_path(n1)):
        listener = socket.create_server(("127.0.0.1", 0))
    server = Server(stand_in, listener)
    config = os.path.join(base, "kubeconfig")
    with open(config, "w", encoding="utf-8") as f:
        f.write(kubeconfig(server.url))
    log_path = os.path.join(base, "n1.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*n1.enter(), sys.executable, "-m", "netkit", "node", "--kubeconfig", config,
                                 "--node-name", "n1", "--conf-dir", os.path.join(base, "conf"), "--interval", "0.05",
                                 "--ready-file", os.path.join(base, "n1.ready")], stdout=log, stderr=log)
    try:
        _wait("routes to n2 and n3", lambda: _kept(n1) == {"10.244.2.0/24": "192.168.77.12",
                                                           "10.244.3.0/24": "192.168.77.13"})
        assert os.path.exists(os.path.join(base, "n1.ready"))
        stand_in.delete("n3")  # a watch event
        _wait("n3's route removed", lambda: "10.244.3.0/24" not in _kept(n1))
        # The watch drops and a request fails; n2 moves meanwhile (only a new list tells).
        stand_in.drop(fail_next=1)
        stand_in.put(node_object("n2", "192.168.77.22", ["10.244.2.0/24"]))
        _wait("n2's route replaced", lambda: _kept(n1) == {"10.244.2.0/24": "192.168.77.22"})
        with open(log_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert any(line.startswith("netkit node: Kubernetes API, watch of nodes: ")
                   and line.endswith(" (keeping the last good facts)") for line in lines), lines
        assert not [line for line in lines if not line.startswith("netkit node: ")], lines  # no library's lines
        assert proc.poll() is None
    finally:
        stand_in.drop()
        try:
            _terminate(proc)
        finally:
            server.close()
    assert not os.path.exists(os.path.join(base, "n1.ready"))


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the process must end cleanly (status 0); killed if it does not."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=PATIENCE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _kept(ns: Netns) -> dict[str, str]:
    out = ns.run("ip", "-j", "route", "show", "proto", str(routes.PROTOCOL)).stdout
    return {r["dst"]: r.get("gateway", "") for r in json.loads(out or "[]")}


def _wait(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
