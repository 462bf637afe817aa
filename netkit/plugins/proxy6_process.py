"""The [::1] proxy process of published ports (started and stopped by ``proxy6``, which says why).

One process per attachment: a listening socket on [::1] per mapping it could bind, TCP relayed by a
thread pair per connection, UDP by one connected upstream socket per client (dropped after
UDP_IDLE); it exits on SIGTERM, or when the host-side veth it watches is removed (rtnetlink's link
group), taking its record with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from netkit import fileio, procinfo

UDP_IDLE = 60.0  # seconds a UDP client's upstream socket lives without traffic
MAX_UDP_CLIENTS = 1024  # upstream sockets kept at most (the least recently used goes for a new one)
MAX_TCP = 1024  # connections relayed at once (each: two threads, two descriptors); more are refused
PAUSE = 0.5  # seconds a listener rests after accept() found no descriptor left (no busy loop)
_RTMGRP_LINK, _RTM_DELLINK = 1, 17
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF, then half-close ``dst``."""
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _relay(client: socket.socket, target: tuple[str, int], slots: threading.BoundedSemaphore) -> None:
    """One TCP connection: to the container, both directions, then both sockets closed and its
    slot given back."""
    with contextlib.ExitStack() as stack:
        stack.callback(slots.release)
        stack.enter_context(client)
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            return
        with upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


def _link_gone(nl: socket.socket, index: int) -> bool:
    """True if the netlink messages waiting on ``nl`` include the removal of link ``index``."""
    try:
        data = nl.recv(65536)
    except OSError:  # ENOBUFS: events were lost; whether the link is still there says it
        if not index:
            return False
        try:
            socket.if_indextoname(index)
        except OSError:
            return True
        return False
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
        if kind == _RTM_DELLINK and _IFINFOMSG.unpack_from(data, offset + _NLMSGHDR.size)[2] == index:
            return True
        offset += max((length + 3) & ~3, _NLMSGHDR.size)
    return False


def _listeners(cfg: dict[str, Any], failed: list[str]) -> list[tuple[socket.socket, str, int]]:
    """The [::1] sockets of the mappings it can bind: (socket, protocol, container port); the labels
    of those it cannot go to ``failed``."""
    out = []
    for host_port, container_port, protocol, label in cfg["mappings"]:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM)
        try:
            if protocol == "tcp":
                # TCP only (a port in TIME_WAIT after a re-ADD); for UDP it would let another
                # socket bind the same port and take its datagrams.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::1", host_port))
            if protocol == "tcp":
                sock.listen(128)
        except OSError:
            sock.close()  # held by something else: start() decides whether that matters
            failed.append(label)
            continue
        out.append((sock, protocol, container_port))
    return out


def _udp_upstream(target: tuple[str, int]) -> socket.socket:
    """A UDP socket connected to the container's port for one client."""
    upstream = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        upstream.connect(target)
    except OSError:
        upstream.close()
        raise
    return upstream


def _serve(cfg: dict[str, Any], nl: socket.socket, watch: int, listeners: list[tuple[socket.socket, str, int]]) -> None:
    sel = selectors.DefaultSelector()
    sel.register(nl, selectors.EVENT_READ, ("netlink",))
    for sock, protocol, port in listeners:
        sel.register(sock, selectors.EVENT_READ, (protocol, port))
    clients: dict[tuple[socket.socket, Any], tuple[socket.socket, float]] = {}  # UDP: (listener, client) -> upstream
    slots = threading.BoundedSemaphore(MAX_TCP)
    paused: dict[socket.socket, tuple[float, Any]] = {}  # TCP listeners resting: -> (until, their data)
    while True:
        now = time.monotonic()
        for sock, (until, data) in list(paused.items()):
            if until <= now:
                del paused[sock]
                sel.register(sock, selectors.EVENT_READ, data)
        wait = min([UDP_IDLE / 2] + [until - now for until, _ in paused.values()])
        for key, _ in sel.select(timeout=max(wait, 0)):
            kind = key.data[0]
            if kind == "netlink":
                if _link_gone(nl, watch):
                    return
            elif kind == "tcp":
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        # The connection stays queued and the socket readable: rest rather than spin.
                        sel.unregister(key.fileobj)
                        paused[key.fileobj] = (time.monotonic() + PAUSE, key.data)  # type: ignore[index]
                    continue  # else the client gave up meanwhile (ECONNABORTED): serve on
                if not slots.acquire(blocking=False):
                    conn.close()  # at the cap: refused, the others served on
                    continue
                try:
                    threading.Thread(target=_relay, args=(conn, (cfg["target"], key.data[1]), slots),
                                     daemon=True).start()
                except RuntimeError:  # no thread could be started
                    conn.close()
                    slots.release()
            elif kind == "udp":
                listener = key.fileobj
                try:
                    data, client = listener.recvfrom(65536)  # type: ignore[union-attr]
                except OSError:
                    continue
                entry = clients.get((listener, client))  # type: ignore[arg-type]
                if entry is None:
                    if len(clients) >= MAX_UDP_CLIENTS:
                        oldest = min(clients, key=lambda pair: clients[pair][1])
                        sel.unregister(clients[oldest][0])
                        clients.pop(oldest)[0].close()
                    try:
                        upstream = _udp_upstream((cfg["target"], key.data[1]))
                    except OSError:  # no descriptor left, no route: this datagram is lost, as on a wire
                        continue
                    sel.register(upstream, selectors.EVENT_READ, ("reply", listener, client))
                    entry = (upstream, 0.0)
                clients[(listener, client)] = (entry[0], time.monotonic())  # type: ignore[index]
                with contextlib.suppress(OSError):
                    entry[0].send(data)
            else:  # a container's UDP reply, back to its client from the [::1] port
                with contextlib.suppress(OSError):
                    key.data[1].sendto(key.fileobj.recv(65536), key.data[2])  # type: ignore[union-attr]
                    clients[(key.data[1], key.data[2])] = (key.fileobj, time.monotonic())  # type: ignore[index]
        now = time.monotonic()
        for pair, (upstream, last) in list(clients.items()):
            if now - last > UDP_IDLE:
                sel.unregister(upstream)
                upstream.close()
                del clients[pair]


def main(raw: str) -> None:
    """The proxy process (started by ``start``): fork off, bind, record itself, say ready, serve."""
    if os.fork():
        os._exit(0)  # the first child: reaped by start(); the proxy is re-parented to init
    cfg = json.loads(raw)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    nl.bind((0, _RTMGRP_LINK))
    try:
        # After subscribing: a link removed before this is seen here, one removed after by the socket.
        watch = socket.if_nametoindex(cfg["watch"]) if cfg["watch"] else 0
    except OSError:
        return
    failed: list[str] = []
    listeners = _listeners(cfg, failed)
    me = f"{os.getpid()} {procinfo.start_time(os.getpid())}"
    fileio.write_atomic(cfg["record"], me.encode())
    try:
        sys.stdout.write(f"ready {json.dumps(failed)}\n")
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # start() waits for EOF on the pipe
        os.close(devnull)
        _serve(cfg, nl, watch, listeners)
    finally:
        mine = False
        with contextlib.suppress(OSError), open(cfg["record"], encoding="ascii") as f:
            mine = f.read() == me
        if mine:
            with contextlib.suppress(OSError):
                os.unlink(cfg["record"])
