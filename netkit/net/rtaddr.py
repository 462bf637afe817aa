"""Addresses over netkit's own rtnetlink socket (rawnl.Socket): one link's, add, remove.

pyroute2 filters an address dump on its side: asking for one link's addresses parses every
address of the namespace (a host with 500 containers has 1,000+, the veths' link-local ones).
With a strict socket the kernel honours the link index in the request header and answers
with that link's addresses only: a request and a few messages, whatever the number of containers.
"""

from __future__ import annotations

import ipaddress
import _socket as socket  # not socket.py: its enum conversions cost a plugin exec ~2 ms
import struct

from netkit.net import rawnl

RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, link index
# No duplicate address detection: an IPv6 address is usable at once instead of "tentative" for
# about a second (what Docker does for its containers' addresses, whose uniqueness IPAM guarantees).
IFA_F_NODAD = 0x02

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def addresses(nl: rawnl.Socket, index: int) -> set[Interface]:
    """The addresses on link ``index`` of the socket's namespace."""
    out: set[Interface] = set()
    for kind, payload in nl.dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)):
        if kind != RTM_NEWADDR:
            continue
        family, prefixlen, _, _, ifindex = IFADDRMSG.unpack_from(payload)
        a = rawnl.attrs(payload, IFADDRMSG.size, len(payload))
        raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
        if ifindex == index and raw and family in (socket.AF_INET, socket.AF_INET6):
            out.add(ipaddress.ip_interface((socket.inet_ntop(family, raw), prefixlen)))
    return out


def _request(iface: Interface, index: int, flags: int = 0) -> bytes:
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    raw = iface.ip.packed
    # IPv4 carries the local address too (the one the kernel keys it by), as `ip address add` sends it.
    local = rawnl.attr(IFA_LOCAL, raw) if iface.version == 4 else b""
    return IFADDRMSG.pack(family, iface.network.prefixlen, flags, 0, index) + local + rawnl.attr(IFA_ADDRESS, raw)


def add(nl: rawnl.Socket, index: int, iface: Interface, nodad: bool = False) -> None:
    """Add ``iface`` on link ``index`` (``nodad``: an IPv6 address skips duplicate address
    detection); OSError EEXIST when it is there already."""
    flags = IFA_F_NODAD if nodad and iface.version == 6 else 0
    nl.call(RTM_NEWADDR, _request(iface, index, flags), rawnl.NLM_F_CREATE | rawnl.NLM_F_EXCL)


def remove(nl: rawnl.Socket, index: int, iface: Interface) -> None:
    """Remove ``iface`` from link ``index``; OSError EADDRNOTAVAIL when it is not there."""
    nl.call(RTM_DELADDR, _request(iface, index))
