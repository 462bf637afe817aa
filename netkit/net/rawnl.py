"""netkit's own netlink wire format and a synchronous socket for it: headers, attributes, requests
that wait for the kernel's acknowledgement, and dumps.

A plugin exec that runs in-process pays for every module it imports; pyroute2's rtnetlink client costs
~110-140 ms to import (an asyncio client and its message classes), more than the rest of a bridge
ADD.  The few requests the bridge path makes (rtlink, rtaddr, rtroute) are built here by hand; nftgen
uses the header helpers for its one nfnetlink request.  pyroute2 stays the library everywhere else.
"""

from __future__ import annotations

import os
import _socket as socket  # not socket.py: its enum conversions cost a plugin exec ~2 ms
import struct
from collections.abc import Iterator

NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
RTATTR = struct.Struct("=HH")  # length, type
_ERRNO = struct.Struct("=i")
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
_SOL_NETLINK = 270
_NETLINK_GET_STRICT_CHK = 12
_RECV_SIZE = 1 << 16  # a dump part the kernel fills is at most 32 KiB; one link message a few KiB


def request(kind: int, flags: int, body: bytes, seq: int = 1) -> bytes:
    """One request message (the kernel assigns the port)."""
    return NLMSG.pack(NLMSG.size + len(body), kind, flags, seq, 0) + body


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


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    raw = RTATTR.pack(RTATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nested(kind: int, *children: bytes) -> bytes:
    """An attribute holding attributes (flagged nested, as the kernel's strict parsers want)."""
    return attr(kind | NLA_F_NESTED, b"".join(children))


def u8(kind: int, value: int) -> bytes:
    """An 8-bit attribute."""
    return attr(kind, struct.pack("=B", value))


def u32(kind: int, value: int) -> bytes:
    """A 32-bit attribute in host byte order."""
    return attr(kind, struct.pack("=I", value))


def string(kind: int, value: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, value.encode() + b"\0")


def text(payload: bytes | None) -> str | None:
    """A string attribute's value (up to its NUL), or None when absent."""
    return None if payload is None else payload.split(b"\0", 1)[0].decode(errors="replace")


def word(payload: bytes | None) -> int | None:
    """A 32-bit attribute's value, or None when absent."""
    return None if payload is None or len(payload) < 4 else struct.unpack_from("=I", payload)[0]


class Socket:
    """One netlink socket (NETLINK_ROUTE by default) of the network namespace it is made in.

    Requests are numbered; ``call`` waits for the kernel's acknowledgement and raises its error as
    OSError with the errno, ``dump`` returns every message of a dump.  With ``strict`` the kernel
    checks request headers and honours the filters a dump request carries (index, master, table),
    so a dump of one link's addresses or routes is the kernel's work, not ours.  Not thread-safe:
    one socket per namespace per thread, as the plugins use it.
    """

    def __init__(self, protocol: int = socket.NETLINK_ROUTE, strict: bool = True) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.strict = False
        if strict:
            try:
                self.sock.setsockopt(_SOL_NETLINK, _NETLINK_GET_STRICT_CHK, 1)
                self.strict = True
            except OSError:  # a kernel before 4.20: dumps come unfiltered and callers filter them
                pass
        self._seq = 0

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self.sock.send(request(kind, flags | NLM_F_REQUEST, body, self._seq))
        return self._seq

    def _replies(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, payload) of the messages answering request ``seq``, up to its ack or end of dump.

        An error the kernel answers with is raised as OSError; messages of an earlier request
        (one abandoned mid-dump) are skipped.
        """
        while True:
            data = self.sock.recv(_RECV_SIZE)
            offset = 0
            while offset + NLMSG.size <= len(data):
                length, kind, _, mseq, _ = NLMSG.unpack_from(data, offset)
                if length < NLMSG.size:
                    raise OSError(0, "malformed netlink message")
                payload = data[offset + NLMSG.size:offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    # A dump that failed once under way ends with its error here, not in an
                    # NLMSG_ERROR (measured: a strict route dump of a missing link: DONE, -ENODEV).
                    code = -_ERRNO.unpack_from(payload)[0] if len(payload) >= _ERRNO.size else 0
                    if code > 0:
                        raise OSError(code, os.strerror(code))
                    return
                if kind == NLMSG_ERROR:
                    code = -_ERRNO.unpack_from(payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
                yield kind, payload

    def call(self, kind: int, body: bytes, flags: int = 0) -> list[tuple[int, bytes]]:
        """Send one request and wait for its acknowledgement; the messages that came before it
        (a get's answer), as (type, payload)."""
        return list(self._replies(self._send(kind, flags | NLM_F_ACK, body)))

    def dump(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        """Every message of a dump, as (type, payload)."""
        return list(self._replies(self._send(kind, NLM_F_DUMP, body)))
