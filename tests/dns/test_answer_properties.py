"""What any bytes get from a network's view: never an exception, an answer that matches the query.

Pure: ``View.decide`` on packets hypothesis makes (random bytes, and real queries with fields
mutated), no sockets.  The daemon's loop adds only the size and client checks in front of it.
"""

from __future__ import annotations

import struct

from dnslib import QTYPE, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.dns import answer, records

RECS = records.NetworkRecords(
    "net1", gateways=["10.9.0.1"], subnets=["10.9.0.0/24"], upstreams=["192.0.2.53"],
    entries=[records.Entry("c1", "eth0", ["web", "api"], ["10.9.0.2/24", "fd00::2/64"]),
             records.Entry("c2", "eth0", ["db", "api"], ["10.9.0.3/24"])])
NAMES = st.sampled_from(["web", "api", "db", "nope", "web.dns.netkit", "api.dns.netkit", "x.dns.netkit",
                         "dns.netkit", "example.org", "2.0.9.10.in-addr.arpa", "9.9.9.10.in-addr.arpa", "."])
QTYPES = st.sampled_from([QTYPE.A, QTYPE.AAAA, QTYPE.ANY, QTYPE.MX, QTYPE.PTR, QTYPE.TXT, QTYPE.SOA, 65535])


def _check(view: answer.View, data: bytes, tcp: bool) -> answer.Decision:
    decision = view.decide(data, tcp)
    assert isinstance(decision, answer.Decision)
    if decision.reply:
        assert decision.reply[:2] == data[:2]            # the client's ID
        assert decision.reply[2] & 0x80                  # QR: an answer
        assert tcp or len(decision.reply) <= answer.UDP_MAX
    return decision


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=12, max_size=600), st.booleans())
def test_random_bytes(data: bytes, tcp: bool) -> None:
    _check(answer.View([RECS]), data, tcp)


@settings(max_examples=300, deadline=None)
@given(NAMES, QTYPES, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.booleans(), st.integers(0, 40))
def test_real_queries_with_mutated_headers_and_cuts(name: str, qtype: int, ident: int, flags: int, tcp: bool,
                                                    cut: int) -> None:
    query = DNSRecord(q=DNSQuestion(name, qtype))
    data = bytearray(query.pack())
    data[0:4] = struct.pack("!HH", ident, flags)
    data = data[: len(data) - cut] if cut < len(data) - 12 else data
    _check(answer.View([RECS]), bytes(data), tcp)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["web", "api", "db", "api.dns.netkit"]), st.integers(1, 6))
def test_local_names_answer_every_address_and_rotate(name: str, times: int) -> None:
    view = answer.View([RECS])
    want = {"web": ["10.9.0.2"], "db": ["10.9.0.3"], "api": ["10.9.0.2", "10.9.0.3"]}[name.split(".")[0]]
    firsts = []
    for i in range(times):
        q = DNSRecord.question(name, "A")
        q.header.id = i
        reply = DNSRecord.parse(_check(view, bytes(q.pack()), False).reply)
        got = [str(rr.rdata) for rr in reply.rr]
        assert sorted(got) == want
        firsts.append(got[0])
    assert len(set(firsts)) == min(times, len(want))
