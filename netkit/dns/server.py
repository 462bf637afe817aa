"""The resolver daemon of one records directory: UDP and TCP port 53 on every network's gateway.

One process per records directory and network namespace (like aardvark-dns per config dir), its
own rather than the warm agent's: it must answer with ``NETKIT_AGENT=off``, outlive an agent
upgrade, and a query must never wait behind a plugin request.  One thread runs a selector loop over
the sockets and answers local names (each asker from its container's networks: ``scopes.py``); forwarding runs on a small thread pool, whose answers come
back to the loop through a queue (TCP answers are written by the loop only).  Plugins talk to it
over the control socket (``control.py``): ``reload`` after every records change, answered once
the new records are served — so a removed name is gone when DEL returns — and the daemon leaves
when no network is left.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import queue
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from netkit.dns import answer, control, records, scopes

PORT = 53
FORWARD_TIMEOUT = 2.0  # seconds per upstream try: an upstream that never answers costs the client this
FORWARD_TOTAL = 4.0  # seconds for every upstream together, then SERVFAIL
# Each forwarded query holds a worker while it waits for the upstreams: more workers than one client
# may hold queries in flight, so a client flooding a silent upstream leaves workers for the others.
FORWARD_WORKERS = 64
FORWARD_PENDING_MAX = 512  # queries in flight upstream; past it SERVFAIL at once (a flood queues nothing)
FORWARD_PER_CLIENT = 32  # queries in flight upstream per client address; past it SERVFAIL at once
TCP_CONNS_MAX = 128
TCP_PER_CLIENT = 16  # TCP connections per client address; a new one past it closes that client's idlest
TCP_IDLE = 10.0  # seconds a TCP client may go without a complete message
TCP_OUT_SOFT = 64 * 1024  # bytes of answers a TCP client has not read: past it, its queries are not read
TCP_OUT_HARD = 1024 * 1024  # ... and past this one (forwarded answers still come) it is closed
LOG_MAX = 1 << 20  # bytes of the daemon's log (stderr): past it the log starts again
_TRACEBACKS_PER_MINUTE = 10  # a query that keeps failing must not write a traceback each time
_BATCH = 64  # datagrams read per wake-up of a UDP socket
_IP_FREEBIND = 15  # bind before the bridge has its address (or while v6 DAD runs)
_IPV6_FREEBIND = 78


class _Tcp:
    """One TCP client: bytes in, length-prefixed answers out."""

    __slots__ = ("conn", "gw", "inbuf", "last", "outbuf", "peer")

    def __init__(self, conn: socket.socket, gw: str, peer: str) -> None:
        self.conn, self.gw, self.peer, self.inbuf, self.outbuf = conn, gw, peer, b"", b""
        self.last = time.monotonic()  # when its last complete message came (or it connected)


class Server:
    """The daemon's state: sockets per gateway address, gates per socket, the forwarding pool."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.sel = selectors.DefaultSelector()
        self.gates: dict[str, scopes.Gate] = {}  # gateway address -> its network's gate
        self.udp: dict[str, socket.socket] = {}
        self.tcp: dict[str, socket.socket] = {}
        self.conns: dict[int, _Tcp] = {}
        self.pool = ThreadPoolExecutor(FORWARD_WORKERS, thread_name_prefix="forward")
        self.pending = 0
        self.pending_of: dict[str, int] = {}  # client address -> its queries in flight upstream
        self.done: queue.SimpleQueue[tuple[Callable[[bytes], None], bytes, str]] = queue.SimpleQueue()
        self._tracebacks: list[float] = []  # when the last ones were written (rate limit)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._woken)
        self.control = control.listen(data_dir)
        self.sel.register(self.control, selectors.EVENT_READ, self._control)
        self.running = True
        self.served = 0

    # -- records -----------------------------------------------------------------------------
    def reload(self) -> tuple[int, list[str]]:
        """Serve the records directory as it is now; (networks served, gateways it could not listen on)."""
        by_gw: dict[str, scopes.Gate] = {}
        every = records.load_all(self.data_dir)
        gates = scopes.gates(every)
        for recs in every:
            for gw in recs.gateways:
                by_gw[gw] = gates[recs.network]
        for gw in set(self.udp) - set(by_gw):
            for table in (self.udp, self.tcp):
                sock = table.pop(gw)
                self.sel.unregister(sock)
                sock.close()
        failed = []
        for gw in set(by_gw) - set(self.udp):
            try:
                self._listen(gw)
            except OSError as exc:
                print(f"netkit-dns: cannot listen on {gw}:{PORT}: {exc}", file=sys.stderr, flush=True)
                by_gw.pop(gw)
                failed.append(gw)
        self.gates = by_gw  # open TCP clients too see the new records: they look their gate up per query
        return len({g.network for g in by_gw.values()}), failed

    def _listen(self, gw: str) -> None:
        family = socket.AF_INET6 if ":" in gw else socket.AF_INET
        made = []
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                made.append(sock)
                if kind == socket.SOCK_STREAM:  # not UDP: there it would share the port with another server
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                level, opt = (socket.IPPROTO_IPV6, _IPV6_FREEBIND) if family == socket.AF_INET6 \
                    else (socket.IPPROTO_IP, _IP_FREEBIND)
                with contextlib.suppress(OSError):
                    sock.setsockopt(level, opt, 1)
                sock.bind((gw, PORT))
                if kind == socket.SOCK_STREAM:
                    sock.listen(64)
        except OSError:
            for sock in made:
                sock.close()
            raise
        udp, tcp = made
        self.udp[gw], self.tcp[gw] = udp, tcp
        self.sel.register(udp, selectors.EVENT_READ, lambda: self._udp(gw, udp))
        self.sel.register(tcp, selectors.EVENT_READ, lambda: self._accept(gw, tcp))

    # -- queries -----------------------------------------------------------------------------
    @staticmethod
    def _decide(view: answer.View | None, data: bytes, client: str, tcp: bool) -> answer.Decision:
        """What ``view`` (None: ``client`` is not of the network) makes of ``data``."""
        if len(data) < 12:
            return answer.DROP  # not even a header: nothing to address an answer to
        if len(data) > answer.MAX_QUERY:
            return answer.Decision(answer.error(data, answer.RCODE.FORMERR))
        if view is None:
            return answer.Decision(answer.error(data, answer.RCODE.REFUSED))
        return view.decide(data, tcp, client)

    def _udp(self, gw: str, sock: socket.socket) -> None:
        for _ in range(_BATCH):
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error of an earlier send: nothing to do with this read
            gate = self.gates.get(gw)
            if gate is None:
                return
            self.served += 1
            view = gate.view_for(peer[0])
            decision = self._decide(view, data, peer[0], tcp=False)
            if decision.forward and view is not None:
                self._forward(view.upstreams_of(peer[0]), data, False, peer[0],
                              lambda reply, peer=peer: self._sendto(sock, reply, peer))
            elif decision.reply:
                self._sendto(sock, decision.reply, peer)

    @staticmethod
    def _sendto(sock: socket.socket, reply: bytes, peer: Any) -> None:
        with contextlib.suppress(OSError):  # a full buffer drops the answer, as a lost datagram would
            sock.sendto(reply, peer)

    def _accept(self, gw: str, listener: socket.socket) -> None:
        try:
            conn, addr = listener.accept()
        except OSError:
            return
        if gw not in self.gates:
            conn.close()
            return
        # Full (for this client, or at all): the idlest connection makes room, so one client holding
        # every slot open cannot shut the others out, and a busy client keeps its connections.
        mine = [s for s in self.conns.values() if s.peer == addr[0]]
        if len(mine) >= TCP_PER_CLIENT:
            self._close(min(mine, key=lambda s: s.last))
        if len(self.conns) >= TCP_CONNS_MAX:
            self._close(min(self.conns.values(), key=lambda s: s.last))
        conn.setblocking(False)
        state = _Tcp(conn, gw, addr[0])
        self.conns[conn.fileno()] = state
        self.sel.register(conn, selectors.EVENT_READ, lambda: self._tcp_ready(state))

    def _tcp_io(self, state: _Tcp) -> None:
        try:
            chunk = state.conn.recv(65537)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(state)
            return
        state.inbuf += chunk
        self._tcp_messages(state)

    def _tcp_messages(self, state: _Tcp) -> None:
        """Answer the complete messages of ``state.inbuf`` while the client reads its answers."""
        while len(state.inbuf) >= 2 and len(state.outbuf) <= TCP_OUT_SOFT and state.conn.fileno() >= 0:
            (size,) = struct.unpack("!H", state.inbuf[:2])
            if len(state.inbuf) < 2 + size:
                break
            data, state.inbuf = state.inbuf[2:2 + size], state.inbuf[2 + size:]
            state.last = time.monotonic()
            gate = self.gates.get(state.gw)
            if gate is None:  # its network went meanwhile
                self._close(state)
                return
            self.served += 1
            view = gate.view_for(state.peer)
            decision = self._decide(view, data, state.peer, tcp=True)
            if decision.forward and view is not None:
                self._forward(view.upstreams_of(state.peer), data, True, state.peer,
                              lambda reply, s=state: self._tcp_send(s, reply))
            elif decision.reply:
                self._tcp_send(state, decision.reply)
            else:
                self._close(state)  # garbage on a stream: no way to find the next message
                return

    def _tcp_send(self, state: _Tcp, reply: bytes) -> None:
        if state.conn.fileno() < 0:
            return  # the client left while its query was upstream
        state.outbuf += struct.pack("!H", len(reply)) + reply
        if len(state.outbuf) > TCP_OUT_HARD:
            self._close(state)  # it asks and never reads: its answers would grow without end
            return
        self._flush(state)

    def _flush(self, state: _Tcp) -> None:
        try:
            sent = state.conn.send(state.outbuf)
            state.outbuf = state.outbuf[sent:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(state)
            return
        # A client that does not read its answers is not read either (its kernel buffer then fills and
        # its sends block): what it has not taken stays bounded by TCP_OUT_SOFT plus a message or so.
        events = (selectors.EVENT_READ if len(state.outbuf) <= TCP_OUT_SOFT else 0) \
            | (selectors.EVENT_WRITE if state.outbuf else 0)
        self.sel.modify(state.conn, events, lambda: self._tcp_ready(state))

    def _tcp_ready(self, state: _Tcp) -> None:
        if state.outbuf:
            self._flush(state)
        if state.conn.fileno() < 0 or len(state.outbuf) > TCP_OUT_SOFT:
            return
        if state.inbuf:
            self._tcp_messages(state)  # what waited while its answers were not read
        if state.conn.fileno() >= 0 and len(state.outbuf) <= TCP_OUT_SOFT:
            self._tcp_io(state)

    def _close(self, state: _Tcp) -> None:
        if state.conn.fileno() < 0:
            return
        self.conns.pop(state.conn.fileno(), None)
        self.sel.unregister(state.conn)
        state.conn.close()

    # -- forwarding --------------------------------------------------------------------------
    def _forward(self, upstreams: list[tuple[str, int]], data: bytes, tcp: bool, client: str,
                 send: Callable[[bytes], None]) -> None:
        mine = self.pending_of.get(client, 0)
        if self.pending >= FORWARD_PENDING_MAX or mine >= FORWARD_PER_CLIENT:
            send(answer.servfail(data))
            return
        self.pending += 1
        self.pending_of[client] = mine + 1
        # The time a query may take counts from its arrival, not from when a worker takes it: one that
        # waited its whole time in the queue gets SERVFAIL without asking (its client has moved on).
        deadline = time.monotonic() + FORWARD_TOTAL

        def work() -> None:
            reply = None
            try:
                reply = _ask_upstreams(upstreams, data, tcp, deadline)
            finally:  # whatever happened, the loop must hear of it: it counts the queries in flight
                self.done.put((send, reply or answer.servfail(data), client))
                with contextlib.suppress(OSError):
                    self.wake_w.send(b"x")

        self.pool.submit(work)

    def _woken(self) -> None:
        with contextlib.suppress(OSError):
            while self.wake_r.recv(4096):
                pass
        while True:
            try:
                send, reply, client = self.done.get_nowait()
            except queue.Empty:
                return
            self.pending -= 1
            left = self.pending_of.pop(client, 1) - 1
            if left:
                self.pending_of[client] = left
            send(reply)

    # -- control -----------------------------------------------------------------------------
    def _control(self) -> None:
        command = control.accept(self.control)
        if command is None:
            return
        conn, verb = command
        with conn:
            if verb == "reload":
                served, failed = self.reload()
                if not served:
                    self.running = False
                control.reply(conn, control.reload_answer(served, failed))
            elif verb == "stop":
                self.running = False
                self.close_gateways()  # a daemon started next binds the gateways as soon as this answers
                control.reply(conn, "exit")
            elif verb == "status":
                control.reply(conn, f"ok pid={os.getpid()} networks={len(set(v.network for v in self.gates.values()))}"
                                    f" served={self.served} tcp={len(self.conns)}"
                                    f" tcp_unread={sum(len(s.outbuf) for s in self.conns.values())}")
            else:
                control.reply(conn, "error unknown command")
        if not self.running:  # nobody may reach a daemon on its way out
            self.sel.unregister(self.control)
            self.control.close()

    def stop_soon(self) -> None:
        """Leave the loop at its next turn, which comes at once (SIGTERM's handler)."""
        self.running = False
        with contextlib.suppress(OSError):
            self.wake_w.send(b"x")  # a select that the signal interrupted resumes waiting otherwise

    def close_gateways(self) -> None:
        """Close every socket on the gateways (listeners and TCP clients); nothing is served after."""
        for state in list(self.conns.values()):
            self._close(state)
        for table in (self.udp, self.tcp):
            for sock in table.values():
                self.sel.unregister(sock)
                sock.close()
            table.clear()
        self.gates = {}

    def _log_exception(self) -> None:
        """The traceback of a query that failed, at most a few a minute, in a log that stays small."""
        now = time.monotonic()
        self._tracebacks = [t for t in self._tracebacks if now - t < 60.0]
        if len(self._tracebacks) >= _TRACEBACKS_PER_MINUTE:
            return
        self._tracebacks.append(now)
        with contextlib.suppress(OSError):
            if os.fstat(sys.stderr.fileno()).st_size > LOG_MAX:
                os.ftruncate(sys.stderr.fileno(), 0)  # opened O_APPEND: the next line starts the file anew
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()

    def _reap_idle(self) -> None:
        now = time.monotonic()
        for state in [s for s in self.conns.values() if now - s.last > TCP_IDLE]:
            self._close(state)

    def serve(self) -> None:
        """Run until stopped, by the control socket or SIGTERM."""
        while self.running:
            for key, _ in self.sel.select(timeout=1.0):
                try:
                    key.data()
                except Exception:  # noqa: BLE001 - one bad query must not stop the resolver of every network
                    self._log_exception()
            self._reap_idle()
        # Before the queries still upstream end (the interpreter waits for the workers): the gateways
        # are free for the next daemon at once.
        self.close_gateways()
        if self.control.fileno() >= 0:  # SIGTERM: the control socket too, a new daemon may take its name
            self.sel.unregister(self.control)
            self.control.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _ask_upstreams(upstreams: list[tuple[str, int]], data: bytes, tcp: bool, deadline: float) -> bytes | None:
    """The first answer of ``upstreams`` to ``data``, over the client's transport, by ``deadline``
    (time.monotonic()); None past it or when none answered.

    A truncated UDP answer goes to the client as it is: the client asks again over TCP, and that
    query is forwarded over TCP.
    """
    for host, port in upstreams:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return _exchange(host, port, data, tcp, min(FORWARD_TIMEOUT, left))
        except OSError:  # refused, unreachable or timed out: the next upstream
            continue
    return None


def _exchange(host: str, port: int, data: bytes, tcp: bool, timeout: float) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))  # a connected UDP socket takes answers from the upstream only
        if tcp:
            sock.sendall(struct.pack("!H", len(data)) + data)
            head = _recv_exact(sock, 2)
            return _recv_exact(sock, struct.unpack("!H", head)[0])
        sock.send(data)
        while True:
            reply = sock.recv(65535)
            if len(reply) >= 12 and reply[:2] == data[:2] and reply[2] & 0x80:
                return reply  # its answer (ID and QR), not a stray datagram


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise OSError(errno.ECONNRESET, "upstream closed the connection")
        out += chunk
    return out


def main(data_dir: str, ready_fd: int) -> int:
    """The daemon's body: serve ``data_dir``; its first answer (or the error) on ``ready_fd`` once listening."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        server = Server(data_dir)
        signal.signal(signal.SIGTERM, lambda *_: server.stop_soon())
        served, failed = server.reload()
    except OSError as exc:
        os.write(ready_fd, f"error {exc}\n".encode())
        return 1
    os.write(ready_fd, control.reload_answer(served, failed).encode() + b"\n")
    os.close(ready_fd)
    # Everything imported so far lives as long as the daemon: out of the collector's sight, a full
    # collection no longer walks it between two queries (it showed as ~2 ms at the p99).
    gc.freeze()
    if served:
        server.serve()
    return 0
