"""Hostile and broken input to the resolver: each gets its DNS error code, and the resolver keeps serving.

Raw packets from inside a container of the network (tests/dns/wire.py); after each, a plain query
must still be answered.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

from dnslib import CLASS, OPCODE, QTYPE, RCODE, DNSQuestion, DNSRecord

from netkit.dns import control, server
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



def _long_question(ident: int = 0xBEEF) -> bytes:
    """A query for a name of 5 labels of 63 bytes: 321 bytes on the wire, past RFC 1035's 255."""
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"


def test_an_over_long_name_gets_formerr_and_forwarding_goes_on(dns_inproc: Dns, servers: list) -> None:
    """dnslib parses a name past 255 bytes and cannot pack it: FORMERR, no traceback in the daemon's log,
    and (more of them than the daemon keeps in flight upstream) forwarding still answers after."""
    dns = dns_inproc
    servers.append(upstream(dns.box.host, "127.0.0.1", 5353))
    web = dns.attach("web", upstreams=["127.0.0.1:5353"])
    for proto in ("udp", "tcp"):
        reply = raw(web.ns, _long_question(), proto)
        assert reply is not None and reply[:2] == b"\xbe\xef" and _rcode(reply) == RCODE.FORMERR, proto
    script = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(10)\n"
              "s.connect((sys.argv[1], 53)); data=bytes.fromhex(sys.argv[2]); n=0\n"
              "for i in range(600):\n"
              "    s.send(i.to_bytes(2, 'big') + data[2:]); n += s.recv(512)[3] & 15 == 1\n"
              "print(n)\n")
    flood = web.ns.run(sys.executable, "-c", script, GATEWAY, _long_question().hex(), check=True)
    assert int(flood.stdout) == 600                     # every one answered, FORMERR
    reply = raw(web.ns, _query("example.org").pack())
    assert reply is not None and str(DNSRecord.parse(reply).a.rdata) == "192.0.2.7"
    _still_serving(dns, web)
    with open(os.path.join(dns.data_dir, control.LOG)) as f:
        assert "Traceback" not in f.read()


def test_one_client_flooding_a_silent_upstream_leaves_forwarding_to_the_others(dns_inproc: Dns,
                                                                              servers: list) -> None:
    """A client past its share of queries in flight gets SERVFAIL at once; another network's client, whose
    upstream answers, still gets its answer while the flood's queries wait on the silent one."""
    dns = dns_inproc
    servers.append(upstream(dns.box.host, "127.0.0.1", 5353, "silent"))
    servers.append(upstream(dns.box.host, "127.0.0.1", 5354))
    flooder = dns.attach("flooder", upstreams=["127.0.0.1:5353"])
    other = dns.attach("other", network="other", subnet="10.21.0.0/24", bridge="nkbr1",
                       upstreams=["127.0.0.1:5354"])
    # 150 datagrams: many more than a client's share in flight, few enough for the sockets' buffers.
    script = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(20)\n"
              "s.connect((sys.argv[1], 53)); data=bytes.fromhex(sys.argv[2]); n=0\n"
              "for i in range(150): s.send(i.to_bytes(2, 'big') + data[2:])\n"
              "print('sent', flush=True)\n"
              "try:\n"
              "    while n < 150 and s.recv(512)[3] & 15 == 2: n += 1\n"
              "except OSError: pass\n"
              "print(n)\n")
    flood = subprocess.Popen([*flooder.ns.enter(), sys.executable, "-c", script, GATEWAY,
                              _query("example.org").pack().hex()], stdout=subprocess.PIPE, text=True)
    assert flood.stdout is not None and flood.stdout.readline().strip() == "sent"
    assert dns.dig(other.ns, "example.org", "A", "10.21.0.1") == ["192.0.2.7"]
    out, _ = flood.communicate(timeout=60)
    assert int(out) == 150                               # SERVFAIL: at once past its share, the rest in time
    assert dns.dig(other.ns, "example.org", "A", "10.21.0.1", "+tcp") == ["192.0.2.7"]


def test_one_address_cannot_hold_every_tcp_slot(dns_inproc: Dns) -> None:
    """Past TCP_PER_CLIENT connections of one address, each new one closes that address's idlest."""
    dns = dns_inproc
    web = dns.attach("web")
    script = ("import socket,struct,sys; data=bytes.fromhex(sys.argv[2]); conns=[]\n"
              "for i in range(20):\n"
              "    c=socket.create_connection((sys.argv[1], 53)); c.settimeout(10)\n"
              "    c.sendall(struct.pack('!H', len(data)) + data); c.recv(2 + 512); conns.append(c)\n"
              "def open_(c):\n"
              "    c.setblocking(False)\n"
              "    try: return c.recv(1, socket.MSG_PEEK) != b''\n"
              "    except BlockingIOError: return True\n"
              "    except OSError: return False\n"
              "print(' '.join(str(int(open_(c))) for c in conns))\n")
    out = web.ns.run(sys.executable, "-c", script, GATEWAY, _query().pack().hex(), check=True).stdout.split()
    assert out == ["0"] * (20 - server.TCP_PER_CLIENT) + ["1"] * server.TCP_PER_CLIENT   # the oldest went
    _still_serving(dns, web, "tcp")


def test_a_tcp_client_that_never_reads_is_no_longer_read(dns_inproc: Dns, servers: list) -> None:
    """Pipelined queries whose answers are never read: the daemon stops reading the client once its unread
    answers pass TCP_OUT_SOFT, so what it holds for the client stays bounded; others are served."""
    dns = dns_inproc
    web = dns.attach("web")
    script = ("import select,socket,struct,sys; data=bytes.fromhex(sys.argv[2])\n"
              "c=socket.create_connection((sys.argv[1], 53)); c.setblocking(False)\n"
              "batch=(struct.pack('!H', len(data)) + data) * 2000; sent=0\n"
              "while sent < 64 << 20:\n"
              "    try: sent += c.send(batch[sent % len(batch):])   # whole messages, however it splits\n"
              "    except BlockingIOError:\n"
              "        if not select.select([], [c], [], 3)[1]: break   # the daemon no longer reads\n"
              "print(sent, flush=True); sys.stdin.read()\n")
    client = subprocess.Popen([*web.ns.enter(), sys.executable, "-c", script, GATEWAY, _query().pack().hex()],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    servers.append(client)
    assert client.stdout is not None and int(client.stdout.readline()) < 64 << 20
    status = dns.daemon_status() or ""
    assert "tcp=1 " in status and int(status.split("tcp_unread=")[1].split()[0]) <= server.TCP_OUT_SOFT + 1024
    _still_serving(dns, web, "tcp")
    _still_serving(dns, web)


def test_a_tcp_client_dribbling_bytes_is_idle_all_the_same(dns_inproc: Dns) -> None:
    """Idleness counts from the last complete message: a byte a second of a message that never ends does
    not keep a connection (it is closed once TCP_IDLE passed), and others are served meanwhile."""
    dns = dns_inproc
    web = dns.attach("web")
    script = ("import socket,sys,time; c=socket.create_connection((sys.argv[1], 53)); c.sendall(b'\\xff\\xff')\n"
              "for i in range(int(sys.argv[2])):\n"
              "    time.sleep(1)\n"
              "    try: c.sendall(b'x'); c.setblocking(False); gone = c.recv(1) == b''\n"
              "    except BlockingIOError: gone = False\n"
              "    except OSError: gone = True\n"
              "    c.setblocking(True)\n"
              "    if gone: break\n"
              "print('closed' if gone else 'open')\n")
    tries = str(int(server.TCP_IDLE) * 3)  # seconds the client keeps dribbling before it gives up
    dribbler = subprocess.Popen([*web.ns.enter(), sys.executable, "-c", script, GATEWAY, tries],
                                stdout=subprocess.PIPE, text=True)
    _still_serving(dns, web, "tcp")
    out, _ = dribbler.communicate()
    assert out.strip() == "closed"
    _still_serving(dns, web, "tcp")
