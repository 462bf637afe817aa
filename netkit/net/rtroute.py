"""Routes over netkit's own rtnetlink socket (rawnl.Socket): add one through a link, list a link's.

Routes are made as pyroute2 made them for netkit before (main table, protocol static, unicast), so
the kernel objects are the same whichever path made them.
"""

from __future__ import annotations

import ipaddress
import _socket as socket  # not socket.py: its enum conversions cost a plugin exec ~2 ms
import struct

from netkit.net import rawnl

RTM_NEWROUTE, RTM_GETROUTE = 24, 26
# family, dst len, src len, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct("=BBBBBBBBI")
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
MAIN_TABLE = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
RTNH_F_ONLINK = 4

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def add(nl: rawnl.Socket, index: int, dst: Network, gateway: str | None = None, onlink: bool = False,
        scope: int = RT_SCOPE_UNIVERSE) -> None:
    """Add a main-table route to ``dst`` through link ``index``, via ``gateway`` when given (``onlink``:
    the gateway need not be in a subnet of the link); ``scope`` RT_SCOPE_LINK for a destination on the
    link itself.  OSError EEXIST when the route is there already."""
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    body = (RTMSG.pack(family, dst.prefixlen, 0, 0, MAIN_TABLE, RTPROT_STATIC, scope, RTN_UNICAST,
                       RTNH_F_ONLINK if onlink else 0)
            + rawnl.attr(RTA_DST, dst.network_address.packed) + rawnl.u32(RTA_OIF, index)
            + (rawnl.attr(RTA_GATEWAY, socket.inet_pton(family, gateway)) if gateway else b""))
    nl.call(RTM_NEWROUTE, body, rawnl.NLM_F_CREATE | rawnl.NLM_F_EXCL)


def routes(nl: rawnl.Socket, index: int) -> list[tuple[Network, str | None]]:
    """(destination, gateway) of the main-table routes through link ``index``, IPv4 then IPv6."""
    out: list[tuple[Network, str | None]] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        # A strict socket has the kernel filter by table and link.
        body = RTMSG.pack(family, 0, 0, 0, MAIN_TABLE, 0, 0, 0, 0) + (rawnl.u32(RTA_OIF, index) if nl.strict else b"")
        for kind, payload in nl.dump(RTM_GETROUTE, body):
            if kind != RTM_NEWROUTE:
                continue
            got_family, dst_len, _, _, table, _, _, _, _ = RTMSG.unpack_from(payload)
            if got_family != family:  # a kernel without IPv6 answers an IPv6 dump with every family
                continue
            a = rawnl.attrs(payload, RTMSG.size, len(payload))
            if (rawnl.word(a.get(RTA_TABLE)) or table) != MAIN_TABLE or rawnl.word(a.get(RTA_OIF)) != index:
                continue
            raw_dst, raw_gw = a.get(RTA_DST), a.get(RTA_GATEWAY)
            dst = socket.inet_ntop(family, raw_dst) if raw_dst else ("0.0.0.0" if family == socket.AF_INET else "::")
            gw = socket.inet_ntop(family, raw_gw) if raw_gw else None
            out.append((ipaddress.ip_network(f"{dst}/{dst_len}", strict=False), gw))
    return out
