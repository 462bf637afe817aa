"""The nftables ruleset generation of the calling thread's network namespace, and what netkit
knows of a ruleset while it stays unchanged.

The kernel counts committed nftables transactions per namespace (``NFT_MSG_GETGEN``); a value read
now that equals one read earlier means no table, chain or rule changed in between.  netkit uses it
to reuse what it read (other tables' forward chains, its own base chains and network rules) until
anything changes that netkit did not change itself.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its enum conversions cost a plugin exec ~2 ms
import struct
import threading
from typing import Any, NamedTuple

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


class Facts:
    """What was read of each namespace's ruleset, usable while its generation shows no change but ours.

    A fact is recorded at the generation read *before* the reading that established it: a change
    made in between leaves it unusable, never wrong.  A commit of netkit's own that moves the
    generation by exactly one carries the facts along (``before_commit``/``after_commit``); the
    caller promises that none of its commits makes a recorded fact untrue.
    """

    def __init__(self, limit: int = 256) -> None:
        self._lock = threading.Lock()
        self._known: dict[int, tuple[Generation, dict[str, Any]]] = {}
        self._limit = limit

    def recall(self) -> tuple[Generation | None, dict[str, Any]]:
        """The calling thread's generation now, and the facts valid at it (never changed in place:
        ``remember`` records a new mapping)."""
        now = current()
        if now is None:
            return None, {}
        with self._lock:
            known = self._known.get(now.netns)
        return now, (known[1] if known is not None and known[0] == now else {})

    def remember(self, at: Generation | None, key: str, value: Any) -> None:
        """Record fact ``key`` as read at generation ``at`` (from ``recall``, before the reading)."""
        if at is None:
            return
        with self._lock:
            known = self._known.get(at.netns)
            facts = known[1] if known is not None and known[0] == at else {}
            if len(self._known) >= self._limit and at.netns not in self._known:
                self._known.clear()  # namespaces come and go (tests, labs): keep it bounded
            self._known[at.netns] = (at, {**facts, key: value})

    def before_commit(self) -> Generation | None:
        """The generation before a commit of ours, read only when anything is kept (a one-shot
        plugin that has recorded nothing spares the request)."""
        return current() if self._known else None

    def after_commit(self, before: Generation) -> None:
        """Carry the facts of ``before``'s namespace past our commit, or drop them.

        Valid only if the generation moved by exactly one since ``before`` (read just before the
        commit) and ``before`` is the generation the facts are of: then no one else changed
        anything.  A commit that failed and did not move the generation changes nothing either.
        """
        after = current()
        with self._lock:
            known = self._known.get(before.netns)
            if known is None or known[0] != before or after is None:
                return
            if after == before.after_one_commit():
                self._known[before.netns] = (after, known[1])
            elif after != before:
                del self._known[before.netns]

