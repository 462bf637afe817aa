"""Link, address and route operations on one namespace's rtnetlink socket.

Each function takes an open ``IPRoute`` so a caller does all its work on one socket per namespace,
and turns kernel errors into CNIError with the object's name in the message.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from typing import Any

from netkit import errors
from netkit.net import rtaddr
from netkit.net.netlink import NetlinkError, kind, lookup


def _kernel(what: str, exc: Exception) -> errors.CNIError:
    return errors.CNIError(errors.KERNEL, what, str(exc))


def ensure_bridge(ipr: Any, name: str, mtu: int | None = None, vlan_filtering: bool = False) -> Any:
    """Return the bridge ``name``, creating it (up) if missing; refuse a non-bridge of that name."""
    link = lookup(ipr, name)
    if link is None:
        # A fixed MAC keeps the bridge's address from following whichever port has the lowest.
        mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        attrs: dict[str, Any] = {"ifname": name, "kind": "bridge", "address": mac}
        if mtu:
            attrs["mtu"] = mtu
        if vlan_filtering:
            attrs["br_vlan_filtering"] = 1
        try:
            ipr.link("add", **attrs)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # a concurrent ADD may have made it first
                raise _kernel(f"failed to create bridge {name}", exc) from None
        link = lookup(ipr, name)
        if link is None:
            raise errors.CNIError(errors.KERNEL, f"bridge {name} vanished after creation")
    if kind(link) != "bridge":
        raise errors.CNIError(errors.NAME_CONFLICT, f"{name!r} already exists and is not a bridge",
                              f"kind={kind(link) or 'device'}; choose another 'bridge' name")
    if vlan_filtering:
        ipr.link("set", index=link["index"], kind="bridge", br_vlan_filtering=1)
    if not link["flags"] & 1:  # IFF_UP
        ipr.link("set", index=link["index"], state="up")
    return link


def delete(ipr: Any, name: str) -> bool:
    """Delete link ``name`` if it exists; True if something was deleted."""
    link = lookup(ipr, name)
    if link is None:
        return False
    try:
        ipr.link("del", index=link["index"])
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise _kernel(f"failed to delete {name}", exc) from None
    return True


def create_veth(ipr: Any, host: str, peer: str, netns: str, mtu: int | None, peer_mac: str | None) -> None:
    """Create veth ``host`` here with its peer ``peer`` made directly inside ``netns`` (a path)."""
    peer_attrs: dict[str, Any] = {"ifname": peer, "net_ns_fd": netns}
    attrs: dict[str, Any] = {"ifname": host, "kind": "veth", "peer": peer_attrs}
    if mtu:
        attrs["mtu"] = peer_attrs["mtu"] = mtu
    if peer_mac:
        peer_attrs["address"] = peer_mac
    try:
        ipr.link("add", **attrs)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            raise errors.CNIError(errors.NAME_CONFLICT, f"container already has an interface named {peer!r}",
                                  str(exc)) from None
        raise _kernel(f"failed to create veth {host}/{peer}", exc) from None


def attach(ipr: Any, name: str, bridge_index: int, hairpin: bool, vlan: int | None, alias: str) -> Any:
    """Enslave ``name`` to the bridge, label it with ``alias``, set hairpin and VLAN, bring it up.

    Returns the link.  The alias records the owner so GC can tell its own ports from another
    network's on a shared bridge (the kernel ignores IFLA_IFALIAS at creation, hence here).
    """
    link = lookup(ipr, name)
    if link is None:
        raise errors.CNIError(errors.KERNEL, f"link {name} vanished")
    index = link["index"]
    try:
        ipr.link("set", index=index, master=bridge_index, state="up", ifalias=alias)
        if hairpin:
            # pyroute2 silently ignores 'hairpin_mode'; the brport keyword is 'mode'.
            ipr.brport("set", index=index, mode=1)
        if vlan:
            ipr.vlan_filter("add", index=index, vlan_info={"vid": vlan, "flags": 6})  # PVID | untagged
    except NetlinkError as exc:
        raise _kernel(f"failed to attach {name} to the bridge", exc) from None
    return link


def set_promisc(ipr: Any, index: int) -> None:
    """Put a link into promiscuous mode."""
    ipr.link("set", index=index, flags=0x100, mask=0x100)  # IFF_PROMISC


def addresses(ipr: Any, index: int) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses on a link (of ``ipr``'s namespace, which must be the calling thread's)."""
    try:
        return rtaddr.link_addresses(index)
    except OSError as exc:
        raise errors.CNIError(errors.KERNEL, f"failed to list the addresses of link {index}", str(exc)) from None


def add_address(ipr: Any, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
    """Add an address; already present is fine."""
    try:
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise _kernel(f"failed to add address {iface}", exc) from None


def remove_address(ipr: Any, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
    """Remove an address; already gone is fine."""
    try:
        ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise _kernel(f"failed to remove address {iface}", exc) from None


def up(ipr: Any, index: int) -> None:
    """Bring a link up."""
    ipr.link("set", index=index, state="up")


def add_route(ipr: Any, index: int, dst: str, gateway: str | None) -> None:
    """Add a route through link ``index``; already present is fine."""
    net = ipaddress.ip_network(dst, strict=False)
    attrs: dict[str, Any] = {"dst": str(net.network_address), "dst_len": net.prefixlen, "oif": index,
                             "family": 2 if net.version == 4 else 10}
    if gateway:
        attrs["gateway"] = gateway
    try:
        ipr.route("add", **attrs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise _kernel(f"failed to add route {dst} via {gateway or 'link'}", exc) from None


def routes(ipr: Any, index: int) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str | None]]:
    """(destination, gateway) of the main-table routes through link ``index``."""
    out = []
    for family in (2, 10):
        for msg in ipr.get_routes(family=family, table=254):
            if msg.get_attr("RTA_OIF") != index:
                continue
            dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == 2 else "::")
            out.append((ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False), msg.get_attr("RTA_GATEWAY")))
    return out


def ports(ipr: Any, bridge_index: int) -> list[Any]:
    """Links enslaved to the bridge."""
    return [link for link in ipr.get_links() if link.get_attr("IFLA_MASTER") == bridge_index]
