"""What ``netkit node`` sets up on its own host, in a real namespace: a masquerade group a previous
run left is removed, the ready file is written before the node says so, a failing host setup is
retried at resync only, and another firewall dropping forwarded pod traffic is one line."""

from __future__ import annotations

import ipaddress
import logging
import os

import pytest

from netkit.firewall.model import MASQ, RuleGroup
from netkit.firewall.nftables import NftablesBackend
from netkit.net import netns
from netkit.node import daemon, filesource, hostsetup, masquerade, snapshot
from tests.node.conftest import Cluster, ns_path

SNAP = snapshot.from_entries([{"name": "n1", "internalIP": "192.168.77.11", "podCIDRs": ["10.244.1.0/24"]},
                              {"name": "n2", "internalIP": "192.168.77.12", "podCIDRs": ["10.244.2.0/24"]}])
LEFT = RuleGroup(MASQ, masquerade.NETWORK, "n1", masquerade.IFNAME, [ipaddress.ip_interface("10.244.1.1/16")],
                 sources=["10.244.1.0/24"])


def _loop(base: str, *clusters: str, ready: str = "") -> daemon.Daemon:
    settings = daemon.Settings("n1", os.path.join(base, "net.d"), ready or os.path.join(base, "ready"),
                               cluster_cidrs=tuple(ipaddress.ip_network(c) for c in clusters), firewall="nftables")
    return daemon.Daemon(settings, filesource.FileSource(os.path.join(base, "none")))


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("clusters", [(), ("10.99.0.0/16",)], ids=["no-cluster-cidr", "podcidr-outside"])
def test_a_masquerade_group_a_previous_run_left_is_removed(cluster: Cluster, tmp_path: os.PathLike[str],
                                                           clusters: tuple[str, ...]) -> None:
    with netns.entered(ns_path(cluster.nodes["n1"][0])):
        masquerade.apply(NftablesBackend(), LEFT)  # the previous run's, with --cluster-cidr 10.244.0.0/16
        _loop(str(tmp_path), *clusters).safely(SNAP)
        assert NftablesBackend().group_comments(LEFT.chain) is None
        _loop(str(tmp_path), *clusters).safely(SNAP)  # none there: removing again is fine


def test_ready_only_once_the_ready_file_is_written(cluster: Cluster, tmp_path: os.PathLike[str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    base = str(tmp_path)
    blocker = os.path.join(base, "run")
    with open(blocker, "w", encoding="utf-8") as f:
        f.write("a file where the ready file's directory should be")
    loop = _loop(base, ready=os.path.join(blocker, "node.ready"))
    caplog.set_level(logging.INFO, logger="netkit.node")
    with netns.entered(ns_path(cluster.nodes["n1"][0])):
        loop.safely(SNAP)
        loop.safely(SNAP)
        assert not loop.state.ready and "ready" not in _lines(caplog)
        os.unlink(blocker)
        loop.safely(SNAP)
    assert sum(line.startswith("cannot write the ready file ") for line in _lines(caplog)) == 1
    assert loop.state.ready and os.path.exists(os.path.join(blocker, "node.ready"))


def test_a_failing_host_setup_is_retried_at_resync_only(cluster: Cluster, tmp_path: os.PathLike[str],
                                                        caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[set[int]] = []

    def failing(versions: set[int]) -> tuple[list[str], list[str]]:
        calls.append(versions)
        return [], ["br_netfilter could not be loaded: not in this kernel"]

    monkeypatch.setattr(hostsetup, "prepare", failing)
    loop = _loop(str(tmp_path))
    caplog.set_level(logging.INFO, logger="netkit.node")
    with netns.entered(ns_path(cluster.nodes["n1"][0])):
        for _ in range(3):
            loop.safely(SNAP)  # new facts (or the same): no modprobe each time
        assert calls == [{4}]
        loop.state.recheck = True  # what run() sets for a resync
        loop.safely(SNAP)
    assert len(calls) == 2
    assert sum("br_netfilter could not be loaded" in line for line in _lines(caplog)) == 1
    assert not any(line.startswith("resolved: br_netfilter") for line in _lines(caplog))


def test_another_firewall_dropping_forwarded_pod_traffic_is_one_line(cluster: Cluster, tmp_path: os.PathLike[str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    host = cluster.nodes["n1"][0]
    host.run("nft", "add", "table", "ip", "filter", check=True)
    host.run("nft", "add", "chain", "ip", "filter", "FORWARD",
             "{ type filter hook forward priority 0; policy drop; }", check=True)
    loop = _loop(str(tmp_path), "10.244.0.0/16")
    caplog.set_level(logging.INFO, logger="netkit.node")
    with netns.entered(ns_path(host)):
        loop.safely(SNAP)
        loop.safely(SNAP)
        host.run("nft", "add", "chain", "ip", "filter", "FORWARD", "{ policy accept; }", check=True)
        loop.safely(SNAP)
    line = ("forwarded pod traffic is dropped by ip filter FORWARD: accept traffic to and from 10.244.1.0/24 there")
    assert _lines(caplog).count(line) == 1 and _lines(caplog).count(f"resolved: {line}") == 1
