"""Link, address and route operations on one namespace's rtnetlink socket, as the plugins need them.

Each function takes an open ``rawnl.Socket`` (netkit's own, not pyroute2: a plugin exec that runs
in-process would pay ~110-140 ms to import pyroute2) so a caller does all its work on one socket per
namespace, and turns kernel errors into CNIError with the object's name in the message.
"""

from __future__ import annotations

import errno
import ipaddress
import os

from netkit import errors
from netkit.net import rawnl, rtaddr, rtlink, rtroute
from netkit.net.rtlink import Link

Socket = rawnl.Socket


def _kernel(what: str, exc: OSError) -> errors.CNIError:
    return errors.CNIError(errors.KERNEL, what, str(exc))


def lookup(nl: Socket, name: str) -> Link | None:
    """The link ``name`` of ``nl``'s namespace, or None."""
    try:
        return rtlink.get(nl, name)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise _kernel(f"failed to look up link {name}", exc) from None


def ensure_bridge(nl: Socket, name: str, mtu: int | None = None, vlan_filtering: bool = False) -> Link:
    """Return the bridge ``name``, creating it (up) if missing; refuse a non-bridge of that name."""
    link = lookup(nl, name)
    if link is None:
        # A fixed MAC keeps the bridge's address from following whichever port has the lowest.
        mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        try:
            rtlink.create_bridge(nl, name, mac, mtu, vlan_filtering)
        except OSError as exc:
            if exc.errno != errno.EEXIST:  # a concurrent ADD may have made it first
                raise _kernel(f"failed to create bridge {name}", exc) from None
        link = lookup(nl, name)
        if link is None:
            raise errors.CNIError(errors.KERNEL, f"bridge {name} vanished after creation")
    if link.kind != "bridge":
        raise errors.CNIError(errors.NAME_CONFLICT, f"{name!r} already exists and is not a bridge",
                              f"kind={link.kind or 'device'}; choose another 'bridge' name")
    try:
        if vlan_filtering:
            rtlink.set_vlan_filtering(nl, link.index)
        if not link.up:
            rtlink.change(nl, link.index, up=True)
    except OSError as exc:
        raise _kernel(f"failed to set up bridge {name}", exc) from None
    return link


def delete(nl: Socket, name: str) -> bool:
    """Delete link ``name`` if it exists; True if something was deleted."""
    link = lookup(nl, name)
    if link is None:
        return False
    try:
        rtlink.delete(nl, link.index)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise _kernel(f"failed to delete {name}", exc) from None
    return True


def create_veth(nl: Socket, host: str, peer: str, netns: str, mtu: int | None, peer_mac: str | None) -> None:
    """Create veth ``host`` here with its peer ``peer`` made directly inside ``netns`` (a path)."""
    try:
        rtlink.create_veth(nl, host, peer, netns, mtu, peer_mac)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise errors.CNIError(errors.NAME_CONFLICT, f"container already has an interface named {peer!r}",
                                  str(exc)) from None
        raise _kernel(f"failed to create veth {host}/{peer}", exc) from None


def attach(nl: Socket, name: str, bridge_index: int, hairpin: bool, vlan: int | None, alias: str) -> Link:
    """Enslave ``name`` to the bridge, label it with ``alias``, set hairpin and VLAN, bring it up.

    Returns the link.  The alias records the owner so GC can tell its own ports from another
    network's on a shared bridge (the kernel ignores IFLA_IFALIAS at creation, hence here).
    """
    link = lookup(nl, name)
    if link is None:
        raise errors.CNIError(errors.KERNEL, f"link {name} vanished")
    try:
        rtlink.change(nl, link.index, master=bridge_index, up=True, alias=alias)
        if hairpin:
            rtlink.set_hairpin(nl, link.index)
        if vlan:
            rtlink.add_vlan(nl, link.index, vlan)
    except OSError as exc:
        raise _kernel(f"failed to attach {name} to the bridge", exc) from None
    return link


def set_promisc(nl: Socket, index: int) -> None:
    """Put a link into promiscuous mode."""
    try:
        rtlink.change(nl, index, promisc=True)
    except OSError as exc:
        raise _kernel(f"failed to set link {index} promiscuous", exc) from None


def addresses(nl: Socket, index: int) -> set[rtaddr.Interface]:
    """The addresses on a link."""
    try:
        return rtaddr.addresses(nl, index)
    except OSError as exc:
        raise errors.CNIError(errors.KERNEL, f"failed to list the addresses of link {index}", str(exc)) from None


def add_address(nl: Socket, index: int, iface: rtaddr.Interface, nodad: bool = False) -> None:
    """Add an address (``nodad``: an IPv6 one usable at once, no duplicate address detection);
    already present is fine."""
    try:
        rtaddr.add(nl, index, iface, nodad)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise _kernel(f"failed to add address {iface}", exc) from None


def remove_address(nl: Socket, index: int, iface: rtaddr.Interface) -> None:
    """Remove an address; already gone is fine."""
    try:
        rtaddr.remove(nl, index, iface)
    except OSError as exc:
        if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise _kernel(f"failed to remove address {iface}", exc) from None


def up(nl: Socket, index: int) -> None:
    """Bring a link up."""
    try:
        rtlink.change(nl, index, up=True)
    except OSError as exc:
        raise _kernel(f"failed to bring link {index} up", exc) from None


def add_route(nl: Socket, index: int, dst: str, gateway: str | None) -> None:
    """Add a route through link ``index``; already present is fine."""
    try:
        rtroute.add(nl, index, ipaddress.ip_network(dst, strict=False), gateway)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise _kernel(f"failed to add route {dst} via {gateway or 'link'}", exc) from None


def routes(nl: Socket, index: int) -> list[tuple[rtroute.Network, str | None]]:
    """(destination, gateway) of the main-table routes through link ``index``."""
    try:
        return rtroute.routes(nl, index)
    except OSError as exc:
        raise _kernel(f"failed to list the routes of link {index}", exc) from None


def ports(nl: Socket, bridge_index: int) -> list[Link]:
    """Links enslaved to the bridge."""
    try:
        return rtlink.dump(nl, master=bridge_index)
    except OSError as exc:
        raise _kernel(f"failed to list the ports of bridge {bridge_index}", exc) from None


def all_links(nl: Socket) -> list[Link]:
    """Every link of ``nl``'s namespace."""
    try:
        return rtlink.dump(nl)
    except OSError as exc:
        raise _kernel("failed to list the links", exc) from None
