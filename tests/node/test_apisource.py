"""The Kubernetes API source against a stand-in for the API server (tests/node/apiserver.py: the real
one cannot run here), through the official client: list, watch events, a dropped watch and failing
requests logged as lines while the last facts stay, then convergence by a new list."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from netkit.node import apisource, snapshot
from tests.node.apiserver import Server, StandInApi, kubeconfig, node_object

PATIENCE = 30.0  # how long a change may take to arrive before the test gives up (not a figure)


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
    source = apisource.ApiSource(path, resync=60, retry=0.1)
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
        assert errors[0] == "Kubernetes API, watch of nodes: Response ended prematurely"
        assert "Kubernetes API, list of nodes: HTTP 500 Internal Server Error" in errors
        assert sum("watch" not in r for r in stand_in.requests) > lists
    finally:
        stand_in.drop()
        source.stop(wait=PATIENCE)
