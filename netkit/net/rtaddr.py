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

_SOL_NETLINK = 270
_NETLINK_GET_STRICT_CHK = 12
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_NLMSG = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out = {}
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        out[kind] = data[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3
    return out


def link_addresses(index: int) -> set[Interface]:
    """The addresses on link ``index`` of the calling thread's network namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(_SOL_NETLINK, _NETLINK_GET_STRICT_CHK, 1)
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
        sock.send(_NLMSG.pack(_NLMSG.size + len(body), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + body)
        out: set[Interface] = set()
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    return out
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _NLMSG.size)[0]
                    if code:
                        raise OSError(code, os.strerror(code) if code != errno.EINVAL else "address dump refused")
                    return out
                if kind == _RTM_NEWADDR:
                    family, prefixlen, _, _, ifindex = _IFADDRMSG.unpack_from(data, offset + _NLMSG.size)
                    attrs = _attrs(data, offset + _NLMSG.size + _IFADDRMSG.size, offset + length)
                    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
                    if ifindex == index and raw and family in (socket.AF_INET, socket.AF_INET6):
                        out.add(ipaddress.ip_interface((socket.inet_ntop(family, raw), prefixlen)))
                offset += (length + 3) & ~3
