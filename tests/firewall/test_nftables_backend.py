"""The nftables backend's reading of other tables: kept while the ruleset generation shows only
netkit's own commits, read again after anyone else's change.  Real tables in a sandbox namespace."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from netkit.firewall.libnft import Nft
from netkit.firewall.model import DNAT, NetworkRules, PortMapping, RuleGroup
from netkit.firewall.nftables import NftablesBackend
from netkit.net import netns
from tests.sandbox import Sandbox


def test_other_tables_are_read_again_only_after_someone_elses_change(inproc: Sandbox,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fw = NftablesBackend()
    readings: list[Any] = []
    run = Nft.run

    def counting_run(self: Nft, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if commands == [{"list": {"chains": {}}}]:
            readings.append(commands)
        return run(self, commands)

    monkeypatch.setattr(Nft, "run", counting_run)
    group = RuleGroup(DNAT, "nftnet", "c1", "eth0", [ipaddress.ip_interface("10.123.0.2/24")], [PortMapping(18080, 80)])
    with netns.entered(inproc.host.path):
        assert fw.forward_blockers() == [] and fw.forward_blockers() == []
        assert len(readings) == 1
        fw.apply(group)  # netkit's own commit: what it knows of other tables still holds
        assert fw.forward_blockers() == [] and len(readings) == 1
        inproc.host.run("nft", "add", "table", "ip", "filter", check=True)
        inproc.host.run("nft", "add", "chain", "ip", "filter", "FORWARD",
                        "{ type filter hook forward priority 0; policy drop; }", check=True)
        assert fw.forward_blockers() == ["ip filter FORWARD"] and len(readings) == 2
        fw.remove_chains({group.chain, group.chain + "-S"})
        assert fw.forward_blockers() == ["ip filter FORWARD"] and len(readings) == 2


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the chains any libnftables context lists from now on."""
    listed: list[str] = []
    run = Nft.run

    def counting_run(self: Nft, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        listed.extend(c["list"]["chain"]["name"] for c in commands if "chain" in c.get("list", {}))
        return run(self, commands)

    monkeypatch.setattr(Nft, "run", counting_run)
    return listed


def _group(cid: str, port: int) -> RuleGroup:
    return RuleGroup(DNAT, "nftnet", cid, "eth0", [ipaddress.ip_interface("10.123.0.2/24")], [PortMapping(port, 80)])


def test_base_chains_known_in_place_are_not_listed_and_are_restored_after_someone_elses_flush(
        inproc: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    fw = NftablesBackend()
    listed = _counting(monkeypatch)
    with netns.entered(inproc.host.path):
        fw.apply(_group("c1", 18081))           # lists the base chains, finds none, writes them
        fw.apply(_group("c2", 18082))           # lists them again, finds them in place: remembered
        assert listed.count("prerouting") == 2
        listed.clear()
        fw.apply(_group("c3", 18083))           # only netkit's own commits since: not listed, nor
        assert listed == []                     # its own chains (created: a first ADD has none)
        inproc.host.run("nft", "flush", "chain", "inet", "netkit", "prerouting", check=True)
        listed.clear()
        fw.apply(_group("c4", 18084))           # someone else's change: listed, found wanting, rewritten
        assert "prerouting" in listed
    rules = inproc.host.run("nft", "list", "chain", "inet", "netkit", "prerouting", check=True).stdout
    assert "jump hostports" in rules


def test_a_re_add_with_the_base_known_replaces_the_group_whole(inproc: Sandbox) -> None:
    # The first ADD creates the group's chains without reading; a second ADD of the same attachment
    # finds them there (the create fails whole) and replaces them: one jump, the new mapping only.
    fw = NftablesBackend()
    with netns.entered(inproc.host.path):
        fw.apply(_group("r1", 18091))
        fw.apply(_group("r2", 18092))           # the base is known from here on
        fw.apply(_group("r2", 18093))           # a re-ADD: same attachment, another port
    chain = _group("r2", 18093).chain
    hostports = inproc.host.run("nft", "list", "chain", "inet", "netkit", "hostports", check=True).stdout
    assert hostports.count(f"jump {chain} ") == 1
    rules = inproc.host.run("nft", "list", "chain", "inet", "netkit", chain, check=True).stdout
    assert "18093" in rules and "18092" not in rules


def test_network_rules_known_in_place_are_not_listed_and_are_restored_after_someone_elses_change(
        inproc: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    fw = NftablesBackend()
    listed = _counting(monkeypatch)
    net = NetworkRules("nftnet", "nkbr9", isolate=True, icc=True, subnets=["10.123.0.0/24"])
    with netns.entered(inproc.host.path):
        fw.apply_network(net)
        fw.apply_network(net)                   # verified in place: remembered
        listed.clear()
        fw.apply_network(net)
        assert listed == []
        inproc.host.run("nft", "flush", "chain", "inet", "netkit", net.chain, check=True)
        fw.apply_network(net)
        assert net.chain in listed
        changed = net._replace(isolate=False)   # new settings are never taken for the old ones
        listed.clear()
        fw.apply_network(changed)
        assert net.chain in listed
    assert inproc.host.run("nft", "list", "chain", "inet", "netkit", net.chain).returncode != 0  # nothing to isolate
