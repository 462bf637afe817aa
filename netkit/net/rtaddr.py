"""The addresses of one link, dumped with the kernel doing the filtering.

pyroute2 filters an address dump on its side: asking for one link's addresses parses every
address of the namespace (a host with 500 containers has 1,000+, the veths' link-local ones).
With NETLINK_GET_STRICT_CHK the kernel honours the link index in the request header and answers
with that link's addresses only: a request and a few messages, whatever the number of containers.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from netkit.net import rawnl

_SOL_NETLINK = 270
_NETLINK_GET_STRICT_CHK = 12
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_IFADDRMSG = struct.Struct("=BBBBI")

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def link_addresses(index: int) -> set[Interface]:
    """The addresses on link ``index`` of the calling thread's network namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(_SOL_NETLINK, _NETLINK_GET_STRICT_CHK, 1)
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
        sock.send(rawnl.request(_RTM_GETADDR, rawnl.NLM_F_REQUEST | rawnl.NLM_F_DUMP, body))
        out: set[Interface] = set()
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + rawnl.NLMSG.size <= len(data):
                length, kind, _, _, _ = rawnl.NLMSG.unpack_from(data, offset)
                if length < rawnl.NLMSG.size or kind == rawnl.NLMSG_DONE:
                    return out
                if kind == rawnl.NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + rawnl.NLMSG.size)[0]
                    if code:
                        raise OSError(code, os.strerror(code) if code != errno.EINVAL else "address dump refused")
                    return out
                if kind == _RTM_NEWADDR:
                    family, prefixlen, _, _, ifindex = _IFADDRMSG.unpack_from(data, offset + rawnl.NLMSG.size)
                    attrs = rawnl.attrs(data, offset + rawnl.NLMSG.size + _IFADDRMSG.size, offset + length)
                    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
                    if ifindex == index and raw and family in (socket.AF_INET, socket.AF_INET6):
                        out.add(ipaddress.ip_interface((socket.inet_ntop(family, raw), prefixlen)))
                offset += (length + 3) & ~3
