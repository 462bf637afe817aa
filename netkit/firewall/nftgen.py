"""The nftables ruleset generation of the calling thread's network namespace.

The kernel counts committed nftables transactions per namespace (``NFT_MSG_GETGEN``); a value read
now that equals one read earlier means no table, chain or rule changed in between.  netkit uses it
to reuse what it read of other tables (forward chains with a drop policy) until anything changes.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from netkit.firewall import release
from netkit.net import rawnl

_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_NFTABLES = 10
_NFT_MSG_NEWGEN, _NFT_MSG_GETGEN = 15, 16
_NFTA_GEN_ID = 1
_SO_NETNS_COOKIE = 71  # Linux >= 5.14: a namespace's number, never reused within a boot
_NFGENMSG = struct.Struct("=BBH")


class Generation(NamedTuple):
    """Which namespace (its cookie) and which generation of its ruleset."""

    netns: int
    gen: int

    def after_one_commit(self) -> "Generation":
        """The generation one commit later (the counter skips 0 when it wraps)."""
        return self._replace(gen=(self.gen + 1) & 0xFFFFFFFF or 1)


def current() -> Generation | None:
    """The calling thread's namespace and its ruleset generation; None where the kernel cannot say."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        cookie = struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8))[0]
        body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
        kind = (_NFNL_SUBSYS_NFTABLES << 8) | _NFT_MSG_GETGEN
        sock.send(rawnl.request(kind, rawnl.NLM_F_REQUEST, body))
        data = sock.recv(4096)
    except OSError:
        return None
    finally:
        release.later(sock.close)  # read right after a commit: its close would wait (see release.py)
    if len(data) < rawnl.NLMSG.size:
        return None
    length, kind, _, _, _ = rawnl.NLMSG.unpack_from(data)
    if kind != (_NFNL_SUBSYS_NFTABLES << 8) | _NFT_MSG_NEWGEN:
        return None  # an error (nf_tables not loaded, say)
    gen = rawnl.attrs(data, rawnl.NLMSG.size + _NFGENMSG.size, min(length, len(data))).get(_NFTA_GEN_ID, b"")
    return Generation(cookie, struct.unpack(">I", gen)[0]) if len(gen) == 4 else None
