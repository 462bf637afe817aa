"""netkit's own rtnetlink layer (rawnl, rtlink, rtaddr, rtroute, links) against pyroute2's view of
the same kernel objects, in a throwaway namespace: what ours makes pyroute2 reads back, what pyroute2
makes ours reads back, and kernel errors map as they did."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

import pytest

from netkit import errors
from netkit.net import links, netns, rtaddr, rtlink, rtroute
from netkit.net.netlink import IPRoute, NetlinkError
from tests.sandbox import Sandbox

PEER_MAC = "02:11:22:33:44:55"
ALIAS = "netkit:n:c1:eth7"
V4, V6 = ipaddress.ip_interface("10.30.0.2/24"), ipaddress.ip_interface("fd30::2/64")


def _kind(msg: Any) -> str:
    info = msg.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""


def _pyroute2_link(ipr: Any, name: str) -> Any:
    return ipr.link("get", ifname=name)[0]


def _global(addresses: set[Any]) -> set[Any]:
    """Without IPv6 link-local addresses and routes: the kernel adds those once a link has carrier,
    from a work queue, so two reads a moment apart may differ by them."""
    return {a for a in addresses if not ipaddress.ip_network(str(a[0] if isinstance(a, tuple) else a),
                                                             strict=False).is_link_local}


def _pyroute2_addresses(ipr: Any, index: int) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    return _global({ipaddress.ip_interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
                    for m in ipr.get_addr(index=index)})


def _pyroute2_routes(ipr: Any, index: int) -> set[tuple[str, str | None, int, int]]:
    """(destination, gateway, protocol, scope) of the main-table routes through ``index``."""
    out = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        for m in ipr.get_routes(family=family, table=254):
            if m.get_attr("RTA_OIF") == index:
                dst = m.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                out.add((f"{dst}/{m['dst_len']}", m.get_attr("RTA_GATEWAY"), m["proto"], m["scope"]))
    return out


def test_what_ours_creates_pyroute2_reads_back(inproc: Sandbox) -> None:
    host, c = inproc.host, inproc.container()
    with netns.entered(host.path), links.Socket() as nl:
        bridge = links.ensure_bridge(nl, "nkbr7", mtu=1400)
        links.set_promisc(nl, bridge.index)
        links.create_veth(nl, "nkv7", "eth7", c.path, 1400, PEER_MAC)
        port = links.attach(nl, "nkv7", bridge.index, hairpin=True, vlan=None, alias=ALIAS)
        links.add_address(nl, bridge.index, ipaddress.ip_interface("10.30.0.1/24"))
        links.add_address(nl, bridge.index, ipaddress.ip_interface("fd30::1/64"))
        with IPRoute() as ipr:
            br = _pyroute2_link(ipr, "nkbr7")
            assert (_kind(br), br["index"], br["flags"] & 0x101, br.get_attr("IFLA_MTU")) == ("bridge", bridge.index,
                                                                                            0x101, 1400)
            assert br.get_attr("IFLA_ADDRESS") == bridge.address and bridge.address.startswith("02:")
            v = _pyroute2_link(ipr, "nkv7")
            assert (_kind(v), v["index"], v.get_attr("IFLA_MASTER"), v["flags"] & 1) == ("veth", port.index,
                                                                                        bridge.index, 1)
            assert (v.get_attr("IFLA_IFALIAS"), v.get_attr("IFLA_MTU")) == (ALIAS, 1400)
            protinfo = {m.get_attr("IFLA_IFNAME"): m.get_attr("IFLA_PROTINFO") for m in ipr.get_links(family=7)}
            assert protinfo["nkv7"].get_attr("IFLA_BRPORT_MODE") == 1  # hairpin
            assert _pyroute2_addresses(ipr, bridge.index) == {ipaddress.ip_interface("10.30.0.1/24"),
                                                              ipaddress.ip_interface("fd30::1/64")}
    with netns.entered(c.path), links.Socket() as nl:
        eth = links.lookup(nl, "eth7")
        assert eth is not None
        for iface in (V4, V6):
            links.add_address(nl, eth.index, iface)
        links.up(nl, eth.index)
        links.add_route(nl, eth.index, "0.0.0.0/0", "10.30.0.1")
        links.add_route(nl, eth.index, "::/0", "fd30::1")
        links.add_route(nl, eth.index, "10.40.0.0/16", None)
        links.add_route(nl, eth.index, "fd40::/64", None)
        rtroute.add(nl, eth.index, ipaddress.ip_network("10.50.0.0/16"), "192.0.2.1", onlink=True)
        with IPRoute() as ipr:
            e = _pyroute2_link(ipr, "eth7")
            assert (_kind(e), e.get_attr("IFLA_ADDRESS"), e.get_attr("IFLA_MTU"), e["flags"] & 1) == (
                "veth", PEER_MAC, 1400, 1)
            assert _pyroute2_addresses(ipr, eth.index) >= {V4, V6}
            got = _pyroute2_routes(ipr, eth.index)
            # As pyroute2 made them for netkit before: protocol static (4), scope universe (0).
            assert {("0.0.0.0/0", "10.30.0.1", 4, 0), ("::/0", "fd30::1", 4, 0), ("10.40.0.0/16", None, 4, 0),
                    ("fd40::/64", None, 4, 0), ("10.50.0.0/16", "192.0.2.1", 4, 0)} <= got
            onlink = [m for m in ipr.get_routes(family=socket.AF_INET, table=254) if m['dst_len'] == 16
                      and m.get_attr("RTA_DST") == "10.50.0.0"]
            assert onlink and onlink[0]["flags"] & 4  # RTNH_F_ONLINK


def test_what_pyroute2_creates_ours_reads_back(inproc: Sandbox) -> None:
    host, c = inproc.host, inproc.container()
    with netns.entered(host.path), IPRoute() as ipr:
        ipr.link("add", ifname="nkbr8", kind="bridge", mtu=1450)
        br = _pyroute2_link(ipr, "nkbr8")
        ipr.link("add", ifname="nkv8", kind="veth", peer={"ifname": "eth8", "net_ns_fd": c.path})
        ipr.link("add", ifname="nkw8", kind="veth", peer="nkw9")
        ipr.link("set", index=_pyroute2_link(ipr, "nkv8")["index"], master=br["index"], state="up", ifalias=ALIAS)
        ipr.addr("add", index=br["index"], address="10.31.0.1", prefixlen=24)
        ipr.addr("add", index=br["index"], address="fd31::1", prefixlen=64)
        # Read after the port is in: a bridge's MTU and MAC follow its ports unless set since.
        br, v = _pyroute2_link(ipr, "nkbr8"), _pyroute2_link(ipr, "nkv8")
        with links.Socket() as nl:
            bridge, port = links.lookup(nl, "nkbr8"), links.lookup(nl, "nkv8")
            assert bridge is not None and port is not None
            assert (bridge.kind, bridge.index, bridge.mtu, bridge.address, bridge.master) == (
                "bridge", br["index"], br.get_attr("IFLA_MTU"), br.get_attr("IFLA_ADDRESS"), None)
            assert (port.kind, port.index, port.master, port.up, port.alias, port.address) == (
                "veth", v["index"], br["index"], True, ALIAS, v.get_attr("IFLA_ADDRESS"))
            assert rtlink.get(nl, index=port.index) == port
            assert [p.name for p in links.ports(nl, bridge.index)] == ["nkv8"]
            assert {link.name for link in links.all_links(nl)} == {m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
            assert _global(links.addresses(nl, bridge.index)) == _pyroute2_addresses(ipr, br["index"])
            assert links.addresses(nl, _pyroute2_link(ipr, "nkw8")["index"]) == set()
    with netns.entered(c.path), IPRoute() as ipr:
        e = _pyroute2_link(ipr, "eth8")
        index = e["index"]
        ipr.link("set", index=index, state="up")
        ipr.addr("add", index=index, address=str(V4.ip), prefixlen=24)
        ipr.addr("add", index=index, address=str(V6.ip), prefixlen=64)
        ipr.route("add", dst="0.0.0.0", dst_len=0, gateway="10.30.0.1", oif=index)
        ipr.route("add", dst="fd40::", dst_len=64, oif=index, family=socket.AF_INET6)
        with links.Socket() as nl:
            eth = links.lookup(nl, "eth8")
            assert eth is not None and (eth.index, eth.address, eth.kind) == (index, e.get_attr("IFLA_ADDRESS"), "veth")
            assert _global(links.addresses(nl, index)) == _pyroute2_addresses(ipr, index)
            assert _global({(str(dst), gw) for dst, gw in links.routes(nl, index)}) == _global({
                (dst, gw) for dst, gw, _, _ in _pyroute2_routes(ipr, index)})
            assert (ipaddress.ip_network("0.0.0.0/0"), "10.30.0.1") in links.routes(nl, index)


def test_addresses_and_routes_of_one_link_only(inproc: Sandbox) -> None:
    with netns.entered(inproc.host.path), links.Socket() as nl:
        rtlink.create_veth(nl, "nka0", "nka1")
        a, b = links.lookup(nl, "nka0"), links.lookup(nl, "nka1")
        assert a is not None and b is not None
        for index in (a.index, b.index):
            links.up(nl, index)
        for iface in ("10.1.2.3/24", "10.1.3.3/28", "fd00::5/64"):
            links.add_address(nl, a.index, ipaddress.ip_interface(iface))
        links.add_address(nl, b.index, ipaddress.ip_interface("10.9.9.9/8"))
        links.add_route(nl, b.index, "10.77.0.0/16", "10.9.9.1")
        assert {str(x) for x in links.addresses(nl, a.index) if not x.is_link_local} == {
            "10.1.2.3/24", "10.1.3.3/28", "fd00::5/64"}
        assert {x for x in links.addresses(nl, b.index) if not x.is_link_local} == {
            ipaddress.ip_interface("10.9.9.9/8")}
        assert ipaddress.ip_interface("127.0.0.1/8") in links.addresses(nl, socket.if_nametoindex("lo"))
        assert all(str(dst) != "10.77.0.0/16" for dst, _ in links.routes(nl, a.index))
        assert (ipaddress.ip_network("10.77.0.0/16"), "10.9.9.1") in links.routes(nl, b.index)
        links.remove_address(nl, a.index, ipaddress.ip_interface("10.1.3.3/28"))
        links.remove_address(nl, a.index, ipaddress.ip_interface("10.1.3.3/28"))  # already gone: fine
        assert ipaddress.ip_interface("10.1.3.3/28") not in links.addresses(nl, a.index)


def test_kernel_errors_map_as_before(inproc: Sandbox) -> None:
    c = inproc.container()
    c.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0", check=True)
    with netns.entered(inproc.host.path), links.Socket() as nl:
        assert links.lookup(nl, "nope0") is None
        with pytest.raises(OSError) as missing:
            rtlink.get(nl, "nope0")
        assert missing.value.errno == errno.ENODEV
        with pytest.raises(OSError) as gone:
            rtlink.delete(nl, 999999)
        assert gone.value.errno == errno.ENODEV
        assert links.delete(nl, "nope0") is False
        with pytest.raises(errors.CNIError) as taken:  # the peer's name exists in the container
            links.create_veth(nl, "nkx0", "eth0", c.path, None, None)
        assert taken.value.code == errors.NAME_CONFLICT and "eth0" in taken.value.msg
        assert links.lookup(nl, "nkx0") is None  # nothing half-made
        links.create_veth(nl, "nkx0", "eth1", c.path, None, None)
        with pytest.raises(errors.CNIError) as not_bridge:
            links.ensure_bridge(nl, "nkx0")
        assert not_bridge.value.code == errors.NAME_CONFLICT
        with pytest.raises(OSError) as exists:
            rtlink.create_bridge(nl, "nkx0", "02:00:00:00:00:01")
        assert exists.value.errno == errno.EEXIST
        index = links.ensure_bridge(nl, "nkbr9").index
        assert links.ensure_bridge(nl, "nkbr9").index == index  # present: returned as it is
        iface = ipaddress.ip_interface("10.33.0.1/24")
        links.add_address(nl, index, iface)
        links.add_address(nl, index, iface)  # already there: fine
        with pytest.raises(OSError) as twice:
            rtaddr.add(nl, index, iface)
        assert twice.value.errno == errno.EEXIST
        with pytest.raises(errors.CNIError) as bad_route:
            links.add_route(nl, index, "10.80.0.0/16", "192.0.2.1")  # gateway on no subnet of the link
        assert bad_route.value.code == errors.KERNEL
        with IPRoute() as ipr, pytest.raises(NetlinkError) as theirs:
            ipr.route("add", dst="10.80.0.0", dst_len=16, gateway="192.0.2.1", oif=index)
        assert str(bad_route.value.details).startswith(f"[Errno {theirs.value.code}]")
        assert links.delete(nl, "nkx0") is True
        assert "eth1" not in c.links()  # the peer went with it


def test_vlan_filtering_as_pyroute2_has_it(inproc: Sandbox) -> None:
    """A VLAN on a bridge port: where the kernel has VLAN filtering, pyroute2 reads ours back; where it
    has not (CONFIG_BRIDGE_VLAN_FILTERING off), ours fails as pyroute2 does."""
    with netns.entered(inproc.host.path), IPRoute() as ipr:
        try:
            ipr.link("add", ifname="nkvl0", kind="bridge", br_vlan_filtering=1)
            refused = 0
        except NetlinkError as exc:
            refused = exc.code
        with links.Socket() as nl:
            if refused:
                with pytest.raises(errors.CNIError) as ours:
                    links.ensure_bridge(nl, "nkvl1", vlan_filtering=True)
                assert f"[Errno {refused}]" in str(ours.value.details)
                return
            bridge = links.ensure_bridge(nl, "nkvl1", vlan_filtering=True)
            rtlink.create_veth(nl, "nkvl2", "nkvl3")
            links.attach(nl, "nkvl2", bridge.index, hairpin=False, vlan=42, alias=ALIAS)
        br = _pyroute2_link(ipr, "nkvl1")
        assert br.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("IFLA_BR_VLAN_FILTERING") == 1
        vlans = {m.get_attr("IFLA_IFNAME"): m.get_attr("IFLA_AF_SPEC") for m in ipr.get_vlans()}
        infos = [v for k, v in vlans["nkvl2"]["attrs"] if k == "IFLA_BRIDGE_VLAN_INFO"]
        assert {(i["vid"], i["flags"]) for i in infos} == {(42, 6)}  # PVID | untagged


def test_a_dump_that_fails_under_way_raises_instead_of_reading_empty(inproc: Sandbox) -> None:
    # The kernel ends a strict route dump of a link that does not exist with NLMSG_DONE carrying
    # -ENODEV: read as an empty list, a caller would take "no routes" (or "no ports") for the truth.
    with netns.entered(inproc.host.path), links.Socket() as nl:
        if not nl.strict:
            pytest.fail("this kernel has no strict netlink checking (4.20+): the case cannot arise here")
        with pytest.raises(OSError) as failed:
            rtroute.routes(nl, 999999)
        assert failed.value.errno == errno.ENODEV
