"""Small servers for lab containers: an HTTP page, TCP and UDP echo, a round-robin TCP proxy.

A scenario's ``serve:`` block becomes ``python -m netkit.lab.serve ...`` as the container's process,
so labs need no images: these are the web apps, echo services and the load-balancing proxy of an
edge node.  Standard library only; one process, one thread per listener.
"""

from __future__ import annotations

import argparse
import errno
import http.server
import itertools
import signal
import socket
import socketserver
import sys
import threading
from typing import Any, Iterator


def serve_args(serve: dict[str, Any], resolve: Any = str) -> list[str]:
    """The argv (after the interpreter) that runs a scenario's ``serve:`` block; ``resolve`` maps backends."""
    argv = ["-m", "netkit.lab.serve"]
    for key in ("http", "tcp", "udp", "proxy"):
        for port in serve_ports(serve, key):
            argv += [f"--{key}", str(port)]
    if "body" in serve:
        argv += ["--body", str(serve["body"])]
    for backend in serve.get("backends", []):
        argv += ["--backend", resolve(backend)]
    return argv


def serve_ports(serve: dict[str, Any], key: str) -> list[int]:
    """The ports of one kind in a ``serve:`` block (a number or a list of numbers)."""
    value = serve.get(key, [])
    return list(value) if isinstance(value, list) else [value]


class _DualStack:
    """Listen on IPv6 and IPv4 at once (``::`` with IPV6_V6ONLY off), so checks reach a container
    over either family; where the namespace has no IPv6 (disabled by sysctl), on IPv4 alone."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # type: ignore[attr-defined]
        super().server_bind()  # type: ignore[misc]


class _Threading(socketserver.ThreadingMixIn):
    daemon_threads = True
    allow_reuse_address = True


class _TCP(_Threading, socketserver.TCPServer):
    pass


class _HTTP(_Threading, http.server.HTTPServer):
    pass


class _TCP6(_DualStack, _TCP):
    pass


class _HTTP6(_DualStack, _HTTP):
    pass


class _UDP6(_DualStack, socketserver.UDPServer):
    pass


_IPV4_ONLY: dict[type, type] = {_TCP6: _TCP, _HTTP6: _HTTP, _UDP6: socketserver.UDPServer}


def _listen(cls: type, port: int, handler: Any) -> socketserver.BaseServer:
    try:
        return cls(("::", port), handler)  # type: ignore[no-any-return]
    except OSError as exc:
        if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise
        return _IPV4_ONLY[cls](("0.0.0.0", port), handler)  # type: ignore[no-any-return]


CLIENT = "{client}"  # in a page's body: the address the request came from (shows masquerade, NAT)


def _http(port: int, body: str) -> socketserver.BaseServer:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            client = self.client_address[0].removeprefix("::ffff:")  # an IPv4 peer of the dual-stack socket
            payload = (body.replace(CLIENT, client) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass  # one line per probe would fill the container log

    return _listen(_HTTP6, port, Page)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        if isinstance(self.request, tuple):  # UDP: (data, socket)
            data, sock = self.request
            sock.sendto(data, self.client_address)
            return
        while chunk := self.request.recv(65536):
            self.request.sendall(chunk)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _proxy(port: int, backends: list[str]) -> socketserver.BaseServer:
    turn: Iterator[str] = itertools.cycle(backends)
    lock = threading.Lock()

    class Forward(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            for _ in backends:  # round robin; a dead backend passes the connection to the next
                with lock:
                    target = next(turn)
                host, _, bport = target.rpartition(":")
                host = host.removeprefix("[").removesuffix("]")  # [fd00::1]:80
                try:
                    upstream = socket.create_connection((host, int(bport)), timeout=3)
                except OSError:
                    continue
                upstream.settimeout(None)
                back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
                back.start()
                _pipe(self.request, upstream)
                back.join()
                upstream.close()
                return

    return _listen(_TCP6, port, Forward)


def main(argv: list[str] | None = None) -> None:
    """Start the requested listeners and serve until SIGTERM."""
    p = argparse.ArgumentParser(prog="netkit.lab.serve")
    for kind, what in (("http", "HTTP page port"), ("tcp", "TCP echo port"), ("udp", "UDP echo port"),
                       ("proxy", "round-robin TCP proxy port")):
        p.add_argument(f"--{kind}", type=int, action="append", default=[], help=f"{what} (repeat)")
    p.add_argument("--body", default="netkit", help=f"what the HTTP page says ({CLIENT}: the client's address)")
    p.add_argument("--backend", action="append", default=[], help="HOST:PORT behind the proxy (repeat)")
    args = p.parse_args(argv)
    servers: list[socketserver.BaseServer] = [_http(port, args.body) for port in args.http]
    servers += [_listen(_TCP6, port, _Echo) for port in args.tcp]
    servers += [_listen(_UDP6, port, _Echo) for port in args.udp]
    servers += [_proxy(port, args.backend) for port in args.proxy]
    if not servers:
        p.error("nothing to serve")
    # As PID 1 of a container nothing has a default signal action: without this, stop would wait 10 s.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
