"""What the sources of ``netkit node`` must survive and must not cost: garbage entries (refused in a
line, the process goes on), a source failing in a way nobody foresaw, heartbeats (no apply), a watch
ending at its timeout (watched again, not listed again), an expired version (listed again, from the
cache), a bad API configuration or a zero interval (a CLI error, not a loop)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
import yaml

from harness.kubeapi import StandInApi, node_object
from netkit.net import netns
from netkit.node import apisource, daemon, filesource, snapshot
from tests.node.conftest import Cluster, ns_path
from tests.node.test_apisource import _kept, _terminate, _wait, api  # noqa: F401 - api: the stand-in fixture
from tests.waiting import PATIENCE


def _netkit_node(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    return subprocess.run([sys.executable, "-m", "netkit", "node", "--node-name", "x", *args], env=env,
                          capture_output=True, text=True, timeout=PATIENCE, check=False)


@pytest.mark.parametrize(("args", "words"), [
    (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig"),
    ([], "in-cluster configuration"),
])
def test_an_unusable_api_configuration_is_one_line_and_an_exit(args: list[str], words: str) -> None:
    done = _netkit_node(*args)
    assert done.returncode != 0
    assert len(done.stderr.splitlines()) == 1 and words in done.stderr, done.stderr


@pytest.mark.parametrize("args", [["--interval", "0"], ["--resync", "-1"]])
def test_a_zero_or_negative_period_is_refused(args: list[str], tmp_path: os.PathLike[str]) -> None:
    done = _netkit_node("--nodes-file", os.path.join(str(tmp_path), "nodes.yaml"), *args)
    assert done.returncode != 0 and args[0] in done.stderr, done.stderr


def test_the_process_outlives_garbage_entries_and_routes_the_good_ones(
        cluster: Cluster, tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    nodes_file = os.path.join(base, "nodes.yaml")
    n2 = {"name": "n2", "internalIP": cluster.nodes["n2"][1], "podCIDRs": ["10.244.2.0/24"]}
    with open(nodes_file, "w", encoding="utf-8") as f:
        yaml.safe_dump({"nodes": [{"metadata": "x"}, {"metadata": {"name": "n3"}, "spec": 5},
                                  {"metadata": {"name": "n4"}, "status": {"addresses": 7}}, n2]}, f)
    log_path = os.path.join(base, "n1.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*cluster.nodes["n1"][0].enter(), sys.executable, "-m", "netkit", "node",
                                 "--nodes-file", nodes_file, "--node-name", "n1", "--conf-dir",
                                 os.path.join(base, "conf"), "--interval", "0.05", "--ready-file", ""],
                                stdout=log, stderr=log)
    try:
        _wait("n2 routed", lambda: _kept(cluster.nodes["n1"][0]) == {"10.244.2.0/24": cluster.nodes["n2"][1]})
        with open(log_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for needle in ("metadata is not a mapping", "node n3: spec is not a mapping",
                       "node n4: status.addresses is not a list"):
            assert sum(needle in line for line in lines) == 1, (needle, lines)
        assert proc.poll() is None
    finally:
        _terminate(proc)


class _Raising:
    """A source whose poll fails with what no source is meant to raise."""

    def poll(self) -> snapshot.Snapshot | None:
        raise KeyError("raw_object")


def test_equal_facts_are_not_applied_again_and_a_failing_poll_keeps_the_last(
        cluster: Cluster, tmp_path: os.PathLike[str], caplog: pytest.LogCaptureFixture) -> None:
    base = str(tmp_path)
    nodes_file = os.path.join(base, "nodes.yaml")

    def write(extra: dict[str, object]) -> None:
        n2 = node_object("n2", cluster.nodes["n2"][1], ["10.244.2.0/24"])
        n2["metadata"].update(extra)  # what netkit does not use: labels, a heartbeat's version
        with open(nodes_file + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"items": [n2]}, f)
        os.replace(nodes_file + ".tmp", nodes_file)

    write({})
    loop = daemon.Daemon(daemon.Settings("n1", os.path.join(base, "conf")), filesource.FileSource(nodes_file))
    with netns.entered(ns_path(cluster.nodes["n1"][0])), caplog.at_level(logging.INFO, logger="netkit"):
        loop.step()
        first = loop.state.last
        assert first is not None and set(first.nodes) == {"n2"}
        write({"labels": {"heartbeat": "1"}, "resourceVersion": "99"})
        assert loop.source.poll() == first  # the file changed, the facts did not
        write({"labels": {"heartbeat": "2"}})
        loop.step()
        assert loop.state.last is first  # not applied again
        loop.source = _Raising()
        loop.step()
        loop.step()
        assert loop.state.last is first
    failed = [r.getMessage() for r in caplog.records if "reading the nodes failed" in r.getMessage()]
    assert failed == ["reading the nodes failed: KeyError: 'raw_object' (keeping the last good facts)"]
    assert _kept(cluster.nodes["n1"][0]) == {"10.244.2.0/24": cluster.nodes["n2"][1]}


def _next(source: apisource.ApiSource) -> snapshot.Snapshot:
    deadline = time.monotonic() + PATIENCE
    while (got := source.poll()) is None:
        assert time.monotonic() < deadline, "the source never delivered"
        time.sleep(0.02)
    return got


def test_a_watch_ending_at_its_timeout_is_watched_again_from_the_last_version_not_listed(
        api: tuple[StandInApi, str]) -> None:  # noqa: F811 - the fixture imported above
    stand_in, path = api
    source = apisource.ApiSource(apisource.load_config(path), watch_timeout=1, retry=0.1)
    source.start()
    try:
        assert set(_next(source).nodes) == {"n1", "n2"}
        stand_in.advance()  # the version moves on without a Node event: only a bookmark tells
        moved = f"resourceVersion={stand_in.version}"
        _wait("a watch from the bookmark's version", lambda: any(moved in w for w in stand_in.watches()))
        _wait("watched again twice more", lambda: len(stand_in.watches()) >= 4)
        # A heartbeat (a MODIFIED Node whose netkit facts are the same) is not news; a real change is.
        beat = node_object("n1", "192.168.77.11", ["10.244.1.0/24"])
        beat["metadata"]["labels"]["heartbeat"] = "1"
        stand_in.put(beat)
        stand_in.put(node_object("n3", "192.168.77.13", ["10.244.3.0/24"]))
        assert set(_next(source).nodes) == {"n1", "n2", "n3"}  # one snapshot: the heartbeat made none
        assert source.poll() is None
        assert stand_in.lists() == [stand_in.lists()[0]] and "resourceVersion=0" in stand_in.lists()[0]
    finally:
        source.stop(wait=PATIENCE)


def test_an_expired_version_is_listed_again_from_the_cache_without_a_line(
        api: tuple[StandInApi, str]) -> None:  # noqa: F811 - the fixture imported above
    stand_in, path = api
    stand_in.bookmarks = False  # else the bookmark at each watch's end keeps the version fresh
    source = apisource.ApiSource(apisource.load_config(path), watch_timeout=1, retry=0.1)
    source.start()
    try:
        _next(source)
        stand_in.compact()
        _wait("a second list", lambda: len(stand_in.lists()) >= 2)
        assert all("resourceVersion=0" in r for r in stand_in.lists())
        stand_in.put(node_object("n3", "192.168.77.13", ["10.244.3.0/24"]))
        assert set(_next(source).nodes) == {"n1", "n2", "n3"}  # poll raises no SourceError: 410 is no failure
    finally:
        source.stop(wait=PATIENCE)
