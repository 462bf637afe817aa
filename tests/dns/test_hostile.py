"""Hostile and broken input to the resolver: each gets its DNS error code, and the resolver keeps serving.

Raw packets from inside a container of the network (tests/dns/wire.py); after each, a plain query
must still be answered.
"""

from __future__ import annotations

import struct
import subprocess
import sys

from dnslib import CLASS, OPCODE, QTYPE, RCODE, DNSQuestion, DNSRecord

from tests.dns.helpers import DOMAIN, GATEWAY, WIRE, Attached, Dns, raw, upstream


def _query(name: str = f"web.{DOMAIN}", qtype: str = "A", ident: int = 0x1234) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    q.header.id = ident
    return q


def _rcode(reply: bytes | None) -> int | None:
    return None if reply is None else reply[3] & 0x0F


def _still_serving(dns: Dns, web: Attached, proto: str = "udp") -> None:
    reply = raw(web.ns, _query().pack(), proto)
    assert reply is not None and DNSRecord.parse(reply).a.rdata is not None
    assert str(DNSRecord.parse(reply).a.rdata) == web.ip


def test_malformed_queries_get_formerr_with_their_id(dns_inproc: Dns) -> None:
    dns = dns_inproc
    web = dns.attach("web")
    header = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    cases = {
        "question cut short": header + b"\x03web",
        "label past the end": header + b"\x3fab",
        "compression loop": header + b"\xc0\x0c\x00\x01\x00\x01",
        "oversize datagram": header + b"\x00" * 5000,
        "two questions": _two_questions(),
        "an answer section in a query": _with_answer(),
    }
    for why, data in cases.items():
        reply = raw(web.ns, data)
        assert _rcode(reply) == RCODE.FORMERR, why
        assert reply is not None and reply[:2] == data[:2], why   # the client can match it to its query
        _still_serving(dns, web)


def test_what_gets_no_answer_at_all(dns_inproc: Dns) -> None:
    dns = dns_inproc
    web = dns.attach("web")
    answer_bit = _query().pack()
    answer_bit = answer_bit[:2] + bytes([answer_bit[2] | 0x80]) + answer_bit[3:]
    for data in (b"", b"\x12\x34\x01", answer_bit):   # shorter than a header; a response (no loops)
        if data:
            assert raw(web.ns, data) is None
        _still_serving(dns, web)


def test_unsupported_opcode_class_and_zones_without_upstream(dns_inproc: Dns) -> None:
    dns = dns_inproc
    web = dns.attach("web")
    notify = _query()
    notify.header.opcode = OPCODE.NOTIFY
    assert _rcode(raw(web.ns, notify.pack())) == RCODE.NOTIMP
    chaos = DNSRecord(q=DNSQuestion("version.bind", QTYPE.TXT, CLASS.CH))
    assert _rcode(raw(web.ns, chaos.pack())) == RCODE.REFUSED
    # No upstream (the helper's networks have none): another zone is refused, not left unanswered.
    assert _rcode(raw(web.ns, _query("example.org").pack())) == RCODE.REFUSED
    assert _rcode(raw(web.ns, _query("example.org").pack(), "tcp")) == RCODE.REFUSED
    _still_serving(dns, web)


def test_an_upstream_that_never_answers_gets_servfail_while_local_names_answer(dns_inproc: Dns,
                                                                               servers: list) -> None:
    dns = dns_inproc
    servers.append(upstream(dns.box.host, "127.0.0.1", 5353, "silent"))
    web = dns.attach("web", upstreams=["127.0.0.1:5353"])
    slow = subprocess.Popen([*web.ns.enter(), sys.executable, WIRE, "ask", "udp", GATEWAY, "53",
                             _query("example.org").pack().hex()], stdout=subprocess.PIPE, text=True)
    slow_tcp = subprocess.Popen([*web.ns.enter(), sys.executable, WIRE, "ask", "tcp", GATEWAY, "53",
                                 _query("example.net").pack().hex()], stdout=subprocess.PIPE, text=True)
    _still_serving(dns, web)      # while both wait for the upstream
    _still_serving(dns, web, "tcp")
    for proc in (slow, slow_tcp):
        out, _ = proc.communicate(timeout=30)
        assert _rcode(bytes.fromhex(out.strip())) == RCODE.SERVFAIL


def test_tcp_garbage_and_half_messages_leave_the_resolver_serving(dns_inproc: Dns) -> None:
    dns = dns_inproc
    web = dns.attach("web")
    assert _rcode(raw(web.ns, struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x09x", "tcp")) == RCODE.FORMERR
    script = ("import socket,sys; s=socket.create_connection((sys.argv[1],53)); s.sendall(b'\\x00\\x40abc');"
              "s.close()")
    web.ns.run(sys.executable, "-c", script, GATEWAY, check=True)   # a length promising more, then gone
    assert raw(web.ns, b"\x00", "tcp") is None                      # not even a length
    _still_serving(dns, web, "tcp")
    _still_serving(dns, web)


def test_a_flood_of_random_bytes_leaves_the_resolver_serving(dns_inproc: Dns) -> None:
    dns = dns_inproc
    web = dns.attach("web")
    script = ("import os,socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              "for i in range(3000): s.sendto(os.urandom(12 + i % 600), (sys.argv[1], 53))\n")
    web.ns.run(sys.executable, "-c", script, GATEWAY, check=True)
    _still_serving(dns, web)
    assert dns.daemon_status() is not None


def _two_questions() -> bytes:
    q = _query()
    q.add_question(DNSQuestion(f"other.{DOMAIN}"))
    return q.pack()


def _with_answer() -> bytes:
    packed = bytearray(_query().pack())
    packed[7] = 1  # ANCOUNT 1 with no record after the question: the header lies
    return bytes(packed)

