"""Real traffic for tests: a TCP+UDP server that answers with its name and the peer it saw, and clients.

Run inside a namespace with ``ip netns exec NS python3 tests/traffic.py ...``:

    serve NAME PORT [PORT...]  answer TCP connections and UDP datagrams on each PORT (all addresses)
    tcp ADDR PORT              connect, print the answer
    serve-in PORT NAME=NETNS...  one process answering TCP on PORT inside each namespace (by path)
    tcp-each TRIES ADDR PORT...  connect to each PORT (up to TRIES tries each), one line per port:
                                 "PORT ANSWER", or "PORT -" when every try went unanswered
    udp ADDR PORT [SPORT]      send one datagram (from SPORT if given), print the answer

Answers are "NAME PEER_ADDRESS".  Exit status 1 and nothing printed when there is no answer
within 2 s.  Only addresses given by the test are contacted.
"""

from __future__ import annotations

import selectors
import socket
import sys


def serve(name: str, ports: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for port in ports:
        tcp = socket.socket(socket.AF_INET6)
        tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("::", port))
        tcp.listen(64)
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        udp.bind(("::", port))
        sel.register(tcp, selectors.EVENT_READ, "tcp")
        sel.register(udp, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if key.data == "tcp":
                conn, peer = sock.accept()  # type: ignore[union-attr]
                conn.sendall(f"{name} {_plain(peer[0])}".encode())
                conn.close()
            else:
                data, peer = sock.recvfrom(2048)  # type: ignore[union-attr]
                sock.sendto(f"{name} {_plain(peer[0])}".encode(), peer)  # type: ignore[union-attr]


def serve_in(port: int, named: list[str]) -> None:
    """``serve`` for many namespaces from one process: each listening socket is made inside its
    namespace (a socket stays in the namespace it was made in), so N containers cost one interpreter."""
    from netkit.net import netns  # the venv's netkit: this file runs with the suite's interpreter

    sel = selectors.DefaultSelector()
    for spec in named:
        name, _, path = spec.partition("=")
        with netns.entered(path):
            tcp = socket.socket(socket.AF_INET6)
        tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("::", port))
        tcp.listen(64)
        sel.register(tcp, selectors.EVENT_READ, name)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            conn, peer = key.fileobj.accept()  # type: ignore[union-attr]
            conn.sendall(f"{key.data} {_plain(peer[0])}".encode())
            conn.close()


def tcp_each(tries: int, addr: str, ports: list[int]) -> int:
    """One line per port: its answer, or "-" after ``tries`` unanswered connections."""
    for port in ports:
        answer = "-"
        for _ in range(tries):
            try:
                with socket.create_connection((addr, port), timeout=2) as s:
                    data = s.recv(200)
            except OSError:
                continue
            if data:
                answer = data.decode()
                break
        print(f"{port} {answer}", flush=True)
    return 0


def _plain(addr: str) -> str:
    return addr[7:] if addr.startswith("::ffff:") else addr


def tcp_client(addr: str, port: int) -> int:
    try:
        with socket.create_connection((addr, port), timeout=2) as s:
            data = s.recv(200)
    except OSError:
        return 1
    if not data:
        return 1
    print(data.decode())
    return 0


def udp_client(addr: str, port: int, sport: int = 0) -> int:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sport:
            s.bind(("", sport))
        s.settimeout(2)
        s.sendto(b"hello", (addr, port))
        try:
            data, _ = s.recvfrom(200)
        except OSError:
            return 1
    print(data.decode())
    return 0


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "serve":
        serve(rest[0], [int(p) for p in rest[1:]])
    elif cmd == "serve-in":
        serve_in(int(rest[0]), rest[1:])
    elif cmd == "tcp-each":
        sys.exit(tcp_each(int(rest[0]), rest[1], [int(p) for p in rest[2:]]))
    elif cmd == "tcp":
        sys.exit(tcp_client(rest[0], int(rest[1])))
    elif cmd == "udp":
        sys.exit(udp_client(rest[0], int(rest[1]), int(rest[2]) if len(rest) > 2 else 0))
    else:
        sys.exit(f"unknown command {cmd}")
