"""The few pieces of the netlink wire format that netkit's own raw requests need (rtaddr, nftgen):
headers and attribute walking.  Everything else goes through pyroute2 or libnftables."""

from __future__ import annotations

import struct

NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
RTATTR = struct.Struct("=HH")  # length, type
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3


def request(kind: int, flags: int, body: bytes) -> bytes:
    """One request message (sequence number 1, the kernel assigns the port)."""
    return NLMSG.pack(NLMSG.size + len(body), kind, flags, 1, 0) + body


def attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    """Attribute type (nesting and byte-order flags cleared) -> payload, from ``offset`` to ``end``."""
    out = {}
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:
            break
        out[kind & 0x3FFF] = data[offset + RTATTR.size:offset + length]
        offset += (length + 3) & ~3
    return out
