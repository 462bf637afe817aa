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


def _long_name(labels: int = 5) -> bytes:
    """A name of ``labels`` labels of 63 bytes on the wire: 5 make 321 bytes, past the 255 of RFC 1035."""
    return (b"\x3f" + b"a" * 63) * labels + b"\x00"


def test_a_question_past_255_bytes_gets_formerr() -> None:
    """dnslib reads such a name, then cannot write it: the answer is a FORMERR header, never an exception."""
    header = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    in_question = header + _long_name() + struct.pack("!HH", QTYPE.A, 1)
    for view in (answer.View([RECS]), answer.View([records.NetworkRecords("net1")])):  # forwards / refuses
        for tcp in (False, True):
            reply = _check(view, in_question, tcp).reply
            assert reply[:2] == b"\xbe\xef" and reply[3] & 0x0F == 1  # FORMERR
    view = answer.View([RECS])
    assert answer.servfail(in_question) == answer.error(in_question, 2)  # no echo of what cannot be packed
    fine = header + _long_name(3) + struct.pack("!HH", QTYPE.A, 1)  # 193 bytes: forwarded as any other name
    assert view.decide(fine, False).forward


def test_more_addresses_than_are_cached_still_rotate() -> None:
    """20 containers on one alias: each answer starts one address further, however many are asked."""
    entries = [records.Entry(f"c{i}", "eth0", ["many"], [f"10.9.0.{10 + i}/24"]) for i in range(20)]
    view = answer.View([records.NetworkRecords("net1", gateways=["10.9.0.1"], subnets=["10.9.0.0/24"],
                                               entries=entries)])
    firsts = []
    for i in range(25):
        q = DNSRecord.question("many", "A")
        q.header.id = i
        reply = DNSRecord.parse(_check(view, bytes(q.pack()), False).reply)
        got = [str(rr.rdata) for rr in reply.rr]
        assert sorted(got) == sorted(f"10.9.0.{10 + i}" for i in range(20))
        firsts.append(got[0])
    assert firsts[:20] == [f"10.9.0.{10 + i}" for i in range(20)] and firsts[20:] == firsts[:5]


def test_a_containers_own_servers_only_where_its_network_forwards() -> None:
    """``upstreams: []`` (an --internal network) forwards nothing, not even to a container's own --dns."""
    own = records.Entry("c1", "eth0", ["web"], ["10.9.0.2/24"], ["192.0.2.99"])
    internal = answer.View([records.NetworkRecords("net1", entries=[own], upstreams=[])])
    assert internal.upstreams_of("10.9.0.2") == []
    assert DNSRecord.parse(internal.decide(bytes(DNSRecord.question("example.org").pack()), False, "10.9.0.2")
                           .reply).header.rcode == 5  # REFUSED
    outside = answer.View([records.NetworkRecords("net1", entries=[own], upstreams=["192.0.2.53"])])
    assert outside.upstreams_of("10.9.0.2") == [("192.0.2.99", 53)]
    assert outside.upstreams_of("10.9.0.3") == [("192.0.2.53", 53)]
