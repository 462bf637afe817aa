"""Raw DNS traffic for the tests, run inside a namespace (``python wire.py ...``).

  ask udp|tcp ADDR PORT HEX       send the bytes HEX (one datagram, or one length-prefixed TCP
                                  message), print the answer's hex or "none" after 3 s
  upstream ADDR PORT answer|answer=IP|silent
                                  a fake upstream resolver on UDP and TCP: "answer" answers every
                                  question with A 192.0.2.7 (or IP), "silent" reads and never answers;
                                  prints "ready" once listening
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

from dnslib import QTYPE, RR, A, DNSRecord

EXTERNAL = "192.0.2.7"


def ask(proto: str, addr: str, port: int, data: bytes) -> bytes | None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sock.connect((addr, port))
            if proto == "udp":
                sock.send(data)
                return sock.recv(65535)
            sock.sendall(struct.pack("!H", len(data)) + data)
            head = sock.recv(2)
            if len(head) < 2:
                return None
            size, out = struct.unpack("!H", head)[0], b""
            while len(out) < size and (chunk := sock.recv(size - len(out))):
                out += chunk
            return out
        except OSError:
            return None


def _answer(data: bytes, address: str) -> bytes:
    query = DNSRecord.parse(data)
    reply = query.reply(aa=0)
    if query.q.qtype == QTYPE.A:
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address), ttl=60))
    return reply.pack()


def upstream(addr: str, port: int, mode: str) -> None:
    silent = mode == "silent"
    address = mode.partition("=")[2] or EXTERNAL
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((addr, port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((addr, port))
    tcp.listen(16)

    def serve_tcp() -> None:
        while True:
            conn, _ = tcp.accept()
            with conn:
                head = conn.recv(2)
                data = conn.recv(struct.unpack("!H", head)[0]) if len(head) == 2 else b""
                if data and not silent:
                    reply = _answer(data, address)
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                elif silent:
                    conn.recv(1)  # hold the connection, answer nothing

    threading.Thread(target=serve_tcp, daemon=True).start()
    print("ready", flush=True)
    while True:
        data, peer = udp.recvfrom(65535)
        if not silent:
            udp.sendto(_answer(data, address), peer)


if __name__ == "__main__":
    if sys.argv[1] == "ask":
        got = ask(sys.argv[2], sys.argv[3], int(sys.argv[4]), bytes.fromhex(sys.argv[5]))
        print(got.hex() if got is not None else "none")
    else:
        upstream(sys.argv[2], int(sys.argv[3]), sys.argv[4])
