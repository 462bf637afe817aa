"""The nftables backend's reading of other tables: kept while the ruleset generation shows only
netkit's own commits, read again after anyone else's change.  Real tables in a sandbox namespace."""

from __future__ import annotations

import ipaddress
from typing import Any

from netkit.firewall.model import DNAT, PortMapping, RuleGroup
from netkit.firewall.nftables import NftablesBackend
from netkit.net import netns
from tests.sandbox import Sandbox


def test_other_tables_are_read_again_only_after_someone_elses_change(inproc: Sandbox) -> None:
    fw = NftablesBackend()
    readings: list[Any] = []
    run = fw._run

    def counting_run(commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if commands == [{"list": {"chains": {}}}]:
            readings.append(commands)
        return run(commands)

    fw._run = counting_run  # type: ignore[method-assign]
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
