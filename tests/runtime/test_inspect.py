"""inspect's Docker keys read from one endpoint's CNI result: both families, the right interface, the MAC."""

from __future__ import annotations

from netkit.runtime import inspect
from netkit.runtime.state import Endpoint

DUAL = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "br-x", "mac": "02:00:00:00:00:01"}, {"name": "nkabc", "mac": "02:00:00:00:00:02"},
                   {"name": "eth1", "mac": "02:00:00:00:00:03", "sandbox": "/run/netns/c"}],
    "ips": [{"address": "fe80::1/64", "interface": 2},  # link-local: Docker shows the global one
            {"address": "10.2.0.5/24", "gateway": "10.2.0.1", "interface": 2},
            {"address": "fd00:2::5/64", "gateway": "fd00:2::1", "interface": 2},
            {"address": "10.9.9.9/24", "gateway": "10.9.9.1", "interface": 1}],  # not the container's
}


def test_dual_stack_endpoint_shows_both_families() -> None:
    got = inspect.addressing(Endpoint(network="n", ifname="eth1", cni_result=DUAL))
    assert got == {"IPAddress": "10.2.0.5", "IPPrefixLen": 24, "Gateway": "10.2.0.1",
                   "GlobalIPv6Address": "fd00:2::5", "GlobalIPv6PrefixLen": 64, "IPv6Gateway": "fd00:2::1",
                   "MacAddress": "02:00:00:00:00:03"}


def test_an_endpoint_without_a_result_shows_empty_values() -> None:
    got = inspect.addressing(Endpoint(network="n"))
    assert got["IPAddress"] == "" and got["IPPrefixLen"] == 0 and got["MacAddress"] == ""
