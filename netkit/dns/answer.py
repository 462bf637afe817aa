"""What the resolver answers one query with, for one asker's view: local names, NXDOMAIN, or "forward".

Wire format through dnslib.  A network's ``View`` holds its names (container names and aliases,
several containers per name) and a small cache of packed answers keyed by the query without its
ID: the names change only when a plugin reloads the daemon, which builds fresh views, so a cached
answer is never stale, and a repeated question costs a dict lookup instead of a parse and a pack.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from dnslib import AAAA, CLASS, EDNS0, OPCODE, PTR, QTYPE, RCODE, RR, A, DNSError, DNSHeader, DNSLabelError, DNSRecord

from netkit.dns import upstreams
from netkit.dns.records import NetworkRecords

MAX_NAME = 255  # bytes of a name on the wire (RFC 1035 3.1): dnslib parses longer ones, then cannot pack them
MAX_QUERY = 4096  # bytes: no honest query comes near it (a name is at most 255, EDNS adds a few dozen)
UDP_PLAIN = 512  # a UDP answer's limit without EDNS (RFC 1035)
UDP_MAX = 4096  # the most a UDP answer grows to, whatever the client's EDNS size says
TTL = 0  # names go and come with containers: a client must not keep them (a removed one is gone at once)
_CACHE_MAX = 4096  # cached answers per network; full -> cleared (hostile variety cannot grow memory)
_ROTATIONS_MAX = 16  # answers with more addresses than this are built per query, not cached
# What a query dnslib parsed may still raise when answered (anything of it dnslib refuses to write back
# that the checks before missed): the query is at fault, FORMERR, never an escaping exception.
_UNPACKABLE = (DNSLabelError, DNSError, struct.error, ValueError, UnicodeError, IndexError)
_PARSE_ERRORS = (DNSError, struct.error, IndexError, ValueError, UnicodeError)


_Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class Decision:
    """What to do with a query: send ``reply``, forward it upstream, or drop it (``reply`` empty)."""

    __slots__ = ("forward", "reply")

    def __init__(self, reply: bytes = b"", forward: bool = False) -> None:
        self.reply, self.forward = reply, forward


DROP = Decision()
FORWARD = Decision(forward=True)


@dataclass
class _Cached:
    replies: list[bytes]  # every rotation's answer, without the 2-byte ID
    turn_key: str  # the name and type whose rotation this answer follows


class View:
    """What one asker sees: the names of one network, or of every network of the asking container.

    Built from those networks' records (``scopes.py`` decides which); a name several networks hold
    gets every address they give it, and a name resolves bare or under its own network's domain.
    """

    def __init__(self, nets: Sequence[NetworkRecords]) -> None:
        # Every domain of the networks, longest first: "a.b.dns.netkit" belongs to the most specific.
        self.zones: dict[str, dict[str, list[_Address]]] = {}
        # Where other names go: every network's upstreams, in order (a container on an internal network
        # and another one forwards: Docker's rule, the container has a way out).
        self.upstreams = _parsed(_union(u for r in nets for u in r.upstreams))
        # A container's own servers (Docker's --dns on a user network: the resolver forwards to them).
        self.own_upstreams = {str(ipaddress.ip_interface(a).ip): _parsed(e.upstreams)
                              for r in nets for e in r.entries if e.upstreams for a in e.addresses}
        # name -> addresses in the order the attachments came (one name may be several containers')
        self.names: dict[str, list[_Address]] = {}
        self.ptr: dict[str, str] = {}
        for recs in nets:
            domain = recs.domain.lower().rstrip(".")
            zone = self.zones.setdefault(domain, {})
            for entry in recs.entries:
                addrs = [ipaddress.ip_interface(a).ip for a in entry.addresses]
                for name in entry.names:
                    for table in (self.names, zone):
                        known = table.setdefault(name.lower(), [])
                        known.extend(a for a in addrs if a not in known)
                if entry.names:
                    for addr in addrs:
                        self.ptr.setdefault(addr.reverse_pointer, f"{entry.names[0]}.{domain}.")
        self.domains = sorted(self.zones, key=len, reverse=True)
        self._cache: dict[bytes, _Cached] = {}
        self._turns: dict[str, int] = {}

    def upstreams_of(self, client: str) -> list[tuple[str, int]]:
        """Where a query of ``client`` that is not the network's goes: its own servers, or the network's.

        Its own servers only where its networks forward at all: ``upstreams: []`` (an --internal
        network) means no way out, whatever servers the container was given.
        """
        if not self.upstreams:
            return []
        return self.own_upstreams.get(client, self.upstreams)

    def decide(self, data: bytes, tcp: bool, client: str = "") -> Decision:
        """The decision for query ``data`` from ``client``, a client of this network."""
        key = data[2:] + (b"T" if tcp else b"U")
        cached = self._cache.get(key)
        if cached is not None:
            return Decision(data[:2] + cached.replies[self._turn(cached)])
        try:
            query = DNSRecord.parse(data)
        except _PARSE_ERRORS:
            return Decision(error(data, RCODE.FORMERR))
        try:
            return self._decide_parsed(query, key, data, tcp, client)
        except _UNPACKABLE:
            return Decision(error(data, RCODE.FORMERR))

    def _decide_parsed(self, query: DNSRecord, key: bytes, data: bytes, tcp: bool, client: str) -> Decision:
        if query.header.qr:
            return DROP  # an answer sent to a resolver: never answer an answer (no loops)
        if query.header.opcode != OPCODE.QUERY:
            return Decision(error(data, RCODE.NOTIMP))
        if len(query.questions) != 1 or query.header.a or query.header.auth \
                or _wire_length(query.q.qname.label) > MAX_NAME:
            return Decision(error(data, RCODE.FORMERR))
        local = self._local(query, tcp)
        if local is None:
            return FORWARD if self.upstreams_of(client) else Decision(refused(query))
        replies, cacheable = local
        if not cacheable:
            return Decision(data[:2] + replies[0])
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        # One rotation per name and type, whichever query bytes ask (dig's EDNS cookie differs each time).
        cached = self._cache[key] = _Cached(replies, f"{str(query.q.qname).lower()}/{query.q.qtype}")
        return Decision(data[:2] + replies[self._turn(cached)])

    def _turn(self, cached: _Cached) -> int:
        """Which rotation of ``cached`` answers now; the next query of its name gets the next one."""
        if len(cached.replies) == 1:
            return 0
        turn = self._turns.get(cached.turn_key, 0)
        if len(self._turns) >= _CACHE_MAX:
            self._turns.clear()
        self._turns[cached.turn_key] = turn + 1
        return turn % len(cached.replies)

    def _local(self, query: DNSRecord, tcp: bool) -> tuple[list[bytes], bool] | None:
        """The answers (every rotation, ID cut off) when the network answers itself, and whether they
        may be cached; None to forward."""
        q = query.q
        qname = str(q.qname).lower().rstrip(".")
        if q.qclass != CLASS.IN:
            return [_pack(_reply(query, RCODE.REFUSED), query, tcp)], True
        for domain in self.domains:
            if qname == domain:
                return [_pack(_reply(query), query, tcp)], True  # the zone itself: no address of its own
            if qname.endswith("." + domain):
                addrs = self.zones[domain].get(qname[: -len(domain) - 1])
                if addrs is None:
                    return [_pack(_reply(query, RCODE.NXDOMAIN), query, tcp)], True
                return self._addresses(query, addrs, tcp)
        addrs = self.names.get(qname)  # a bare name, as a client without our search domain asks it
        if addrs is not None:
            return self._addresses(query, addrs, tcp)
        if q.qtype == QTYPE.PTR and qname.endswith((".in-addr.arpa", ".ip6.arpa")):
            return self._reverse(query, qname, tcp)
        return None

    def _addresses(self, query: DNSRecord, addrs: list[_Address], tcp: bool) -> tuple[list[bytes], bool]:
        qtype = query.q.qtype
        want = [a for a in addrs if qtype == QTYPE.ANY or (a.version == 4) == (qtype == QTYPE.A)] \
            if qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY) else []
        if len(want) > _ROTATIONS_MAX:
            # Too many rotations to keep: one answer, starting where the last such answer stopped, built
            # for this query only (a cached one would answer every later query in the same order).
            key = f"{str(query.q.qname).lower()}/{qtype}/many"
            turn = self._turns.get(key, 0) % len(want)
            if len(self._turns) >= _CACHE_MAX:
                self._turns.clear()
            self._turns[key] = turn + 1
            return [_pack(_with(query, want[turn:] + want[:turn]), query, tcp)], False
        return [_pack(_with(query, want[k:] + want[:k]), query, tcp) for k in range(max(len(want), 1))], True

    def _reverse(self, query: DNSRecord, qname: str, tcp: bool) -> tuple[list[bytes], bool] | None:
        target = self.ptr.get(qname)
        if target is not None:
            reply = _reply(query)
            reply.add_answer(RR(query.q.qname, QTYPE.PTR, rdata=PTR(target), ttl=TTL))
            return [_pack(reply, query, tcp)], True
        return None  # not a container of ours: the upstreams may know it


def _wire_length(labels: tuple[bytes, ...]) -> int:
    """Bytes of a name on the wire: each label with its length byte, and the root's."""
    return sum(len(label) + 1 for label in labels) + 1


def _union(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _parsed(specs: list[str]) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        try:
            out.append(upstreams.parse(spec))
        except ValueError:
            continue  # the plugin checked them: a hand-edited file loses only the bad one
    return out


def _reply(query: DNSRecord, rcode: int = RCODE.NOERROR) -> DNSRecord:
    reply = query.reply()
    reply.header.rcode = rcode
    return reply


def _with(query: DNSRecord, addrs: Iterable[_Address]) -> DNSRecord:
    reply = _reply(query)
    for addr in addrs:
        rdata = A(str(addr)) if addr.version == 4 else AAAA(str(addr))
        reply.add_answer(RR(query.q.qname, QTYPE.A if addr.version == 4 else QTYPE.AAAA, rdata=rdata, ttl=TTL))
    return reply


def _edns_size(query: DNSRecord) -> int | None:
    """The client's EDNS UDP payload size, or None when it sent no OPT record."""
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return int(rr.rclass)
    return None


def _pack(reply: DNSRecord, query: DNSRecord, tcp: bool) -> bytes:
    """``reply`` packed without its ID, truncated (TC) past what the client takes over UDP."""
    size = _edns_size(query)
    if size is not None:
        reply.add_ar(EDNS0(udp_len=UDP_MAX))
    packed = reply.pack()
    limit = 65535 if tcp else min(max(size or UDP_PLAIN, UDP_PLAIN), UDP_MAX)
    if len(packed) > limit:
        packed = reply.truncate().pack()
    return packed[2:]


def error(data: bytes, rcode: int) -> bytes:
    """A bare answer with ``rcode`` to query ``data`` that may not parse (its ID and RD bit kept)."""
    ident, flags = struct.unpack("!HH", data[:4]) if len(data) >= 4 else (0, 0)
    header = DNSHeader(id=ident, qr=1, rd=(flags >> 8) & 1, ra=1, opcode=(flags >> 11) & 0xF, rcode=rcode)
    return DNSRecord(header).pack()


def refused(query: DNSRecord) -> bytes:
    """REFUSED to a parsed query (its question echoed): not ours to answer, nowhere to forward it."""
    return _reply(query, RCODE.REFUSED).pack()


def servfail(data: bytes) -> bytes:
    """SERVFAIL to query ``data`` (the upstreams failed it), its question echoed when it parses."""
    try:
        query = DNSRecord.parse(data)
        reply = query.reply(aa=0)
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()
    except _UNPACKABLE:  # a question dnslib reads but cannot write back: the bare header
        return error(data, RCODE.SERVFAIL)
