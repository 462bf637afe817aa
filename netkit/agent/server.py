"""`netkit agent`: serve plugin requests with warm imports, each in the caller's network namespace.

Each plugin request runs on a pooled worker thread, which joins the namespace the launcher passed (a
thread's namespace is its own), runs the same protocol handler the plugins run in-process, and
returns to the agent's own namespace.  Requests of one plugin for one attachment are serialised;
shared objects (the IPAM store, host ports, firewall tables) are already serialised by their own
locks.  Only root may talk to it: the socket is mode 0600 and the peer's credentials are checked;
a root with other privileges than the agent's (capabilities, no_new_privs, seccomp) runs its request itself.

One agent per socket: it holds the life lock beside the socket for its whole life (lifelock.py).
SIGTERM stops it gracefully: it stops accepting, finishes the requests in flight, removes the socket
if it is still its own and exits 0.  Under systemd it serves the socket systemd hands it (LISTEN_FDS).
Control requests (``status``) are answered whatever the caller's version.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

from netkit import __version__, errors, failpoints, plugins
from netkit.agent import lifelock, protocol
from netkit.cni import handler
from netkit.net import netns

_libc = ctypes.CDLL(None, use_errno=True)
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before the worker pool starts.

    glibc gives each new thread an arena of its own, up to 8 per CPU: measured here, every worker
    the pool adds costs ~430 KiB of resident memory that way, against ~45 KiB with the cap.  The
    workers run Python under one GIL most of the time, so they seldom contend for an arena.
    """
    with contextlib.suppress(AttributeError):  # not glibc: nothing to cap
        _libc.mallopt(_M_ARENA_MAX, arenas)


class _Locks:
    """One lock per key, made on demand and dropped when its last user leaves.

    Keys name attachments (container IDs), an unbounded set over an agent's life: keeping every
    lock ever made would grow the agent with each container it ever served.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}  # key -> (lock, [users])

    @contextlib.contextmanager
    def held(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key`` for the block."""
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def seen_alike(peer: int, path: str) -> bool:
    """True when ``path`` names the same file (or nothing) here as for process ``peer``.

    The agent joins its caller's network namespace but cannot join its mount namespace (setns
    refuses that to a threaded process): a namespace the caller bound in a private mount namespace
    of its own (``ip netns exec``, ``unshare -m``) is a plain file here, or nothing at all.
    /proc/PID/root and /proc/PID/cwd resolve a path the way that process does.
    """
    theirs = f"/proc/{peer}/root{path}" if path.startswith("/") else f"/proc/{peer}/cwd/{path}"
    return _identity(path) == _identity(theirs)


def _error(msg: str) -> bytes:
    return json.dumps(errors.CNIError(errors.INTERNAL, msg).to_dict("1.1.0")).encode() + b"\n"


class _Handler(socketserver.BaseRequestHandler):
    server: "AgentServer"

    def handle(self) -> None:
        sock: socket.socket = self.request
        fds: list[int] = []
        moved = False
        try:
            peer, uid = protocol.peer(sock)
            if uid != 0:
                protocol.send_reply(sock, 1, _error("the netkit agent serves root only"))
                return
            head, stdin, fds = protocol.recv_request(sock)
            header = json.loads(head)
            if "control" in header:  # before the version check: `netkit agent status` of any version
                protocol.send_reply(sock, *self.server.control(str(header["control"])))
                return
            if header.get("version") != __version__:
                protocol.send_reply(sock, protocol.OTHER_VERSION, b"")  # the launcher has us replaced
                return
            if len(fds) != 1 or not protocol.same_privileges(peer):
                protocol.send_reply(sock, protocol.NOT_SERVED, b"")  # the launcher runs it itself
                return
            env: dict[str, str] = {str(k): str(v) for k, v in header["env"].items()}
            if env.get("CNI_NETNS") and not seen_alike(peer, env["CNI_NETNS"]):
                protocol.send_reply(sock, protocol.NOT_SERVED, b"")  # the launcher runs it itself
                return
            # Failpoints are the agent's own business (its environment at start): a client must not
            # arm one here, nor in the delegates exec'd with this environment.
            env.pop(failpoints.ENV, None)
            moved = True  # set before the call: a failed setns may still have been partial
            try:
                netns.setns_fd(fds[0])
            except OSError as exc:
                protocol.send_reply(sock, 1, _error(f"agent could not join the caller's namespace: "
                                                    f"{exc.strerror}"))
                return
            # Per plugin and attachment: a bridge ADD waits for the IPAM ADD it delegated, which
            # comes back here for the same container.
            key = f"{header['plugin']}\0{env.get('CNI_CONTAINERID', '')}\0{env.get('CNI_IFNAME', '')}"
            with self.server.locks.held(key):
                try:
                    failpoints.hit("agent.after-setns")
                    out, code = handler.handle(plugins.get(str(header["plugin"])), env, stdin)
                    failpoints.hit("agent.before-reply")
                except failpoints.FailpointError as exc:
                    out, code = json.dumps(exc.to_dict("1.1.0")).encode() + b"\n", 1
            protocol.send_reply(sock, code, out)
            self.server.count_served()
        except (OSError, ValueError, KeyError, ConnectionError):
            pass  # the launcher went away or spoke nonsense: it falls back in-process
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if moved:
                with contextlib.suppress(OSError):
                    netns.setns_fd(self.server.home_netns)


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The unix-socket server; each request on a worker thread, reused from one request to the next.

    Not a new thread per request: libnftables (and pyroute2's sockets) keep per-thread state that
    a thread's exit does not free, measured at 1-4 KiB per request, so an agent that made a thread
    per request grew by ~15 MiB per 1,000 containers served.  Reused workers stop that.
    """

    daemon_threads = True
    # Far more than ever run at once: a bridge request holds its worker while the IPAM request it
    # delegated comes back here and needs another, so a small pool could starve itself.
    MAX_WORKERS = 256

    def __init__(self, path: str, listening: socket.socket | None = None) -> None:
        """Bind ``path``, or serve ``listening`` (a socket systemd bound and listens on) there."""
        self.locks = _Locks()
        self.started = time.monotonic()
        self._served = 0
        self._served_lock = threading.Lock()
        self.own: tuple[int, int] | None = None  # (dev, inode) of the socket file we bound
        self._pool = ThreadPoolExecutor(self.MAX_WORKERS, thread_name_prefix="netkit-agent")
        # Where a worker returns after each request: idle in a caller's namespace it would keep
        # that namespace (and everything in it) alive after the caller deleted it.
        self.home_netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        # Bound under a temporary name and renamed into place once listening: a socket file that
        # exists accepts.  Bound in place, it existed before listen(), and a plugin connecting in
        # between was refused and ran in-process (and a test taking the file for readiness failed).
        self.path = path
        self._binding = f"{path}.{os.getpid()}.tmp"
        if listening is not None:
            super().__init__(path, _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = listening
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._binding)
        old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            super().__init__(self._binding, _Handler)
        finally:
            os.umask(old)

    def server_activate(self) -> None:
        """Listen, then put the socket where plugins look for it (replacing a stale one)."""
        super().server_activate()
        os.rename(self._binding, self.path)
        self.own = _identity(self.path)

    def count_served(self) -> None:
        """One more plugin request answered."""
        with self._served_lock:
            self._served += 1

    def status(self) -> dict[str, Any]:
        """What `netkit agent status` shows: who, since when, how much served, how much memory."""
        mem = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    mem[key] = int(value.split()[0])
        return {"pid": os.getpid(), "version": __version__, "uptime_s": round(time.monotonic() - self.started, 3),
                "requests_served": self._served, "rss_kib": mem.get("VmRSS", 0), "hwm_kib": mem.get("VmHWM", 0),
                "socket": self.path}

    def control(self, name: str) -> tuple[int, bytes]:
        """The reply (exit status, JSON) to control request ``name``."""
        if name == "status":
            return 0, json.dumps(self.status()).encode() + b"\n"
        return 1, json.dumps({"error": f"unknown control request {name!r}"}).encode() + b"\n"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the request on a pooled worker."""
        self._pool.submit(self.process_request_thread, request, client_address)

    def server_close(self) -> None:
        """Stop accepting, then wait for the requests in flight (and those accepted, queued) to finish.

        Not ``wait=False, cancel_futures=True``: that dropped accepted requests unanswered and
        closed ``home_netns`` under workers still about to return to it.
        """
        super().server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._binding)  # failed before its rename
        self._pool.shutdown(wait=True)
        with contextlib.suppress(OSError):
            os.close(self.home_netns)

    def remove_socket(self) -> None:
        """Remove the socket file if it is still the one we bound (not a successor's, nor systemd's)."""
        if self.own is not None and _identity(self.path) == self.own:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class _Stop(BaseException):
    """SIGTERM before the server runs: nothing in flight, leave at once."""


def _stop(*_: Any) -> None:
    raise _Stop


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed us (socket activation: LISTEN_PID, LISTEN_FDS, fd 3), or None.

    The variables are removed either way: the delegates and tools the agent execs must not take fd
    3 for theirs.
    """
    pid, fds = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid != str(os.getpid()) or not fds.isdigit() or int(fds) < 1:
        return None
    os.set_inheritable(3, False)
    return socket.socket(fileno=3)


def serve(path: str = protocol.DEFAULT_SOCKET, ready: Any = None, lock_fd: int | None = None,
          replace: bool = False, replace_fd: int | None = None) -> None:
    """Hold the life lock, serve until SIGTERM (or Ctrl-C), then stop gracefully.

    ``ready`` (a callable) is told once the socket accepts.  ``lock_fd``, ``replace``,
    ``replace_fd``: see lifelock.take (raises LockHeld when another agent keeps the socket).

    What the served plugins delegate (bridge -> netkit-ipam) runs through the process's executor
    (cni.executor.current): ``netkit agent``, like every netkit command, installs the one that
    answers netkit's own plugins right here (netkit.launch.invoker), so a delegation costs no
    interpreter; the agent itself knows no launcher.
    """
    signal.signal(signal.SIGTERM, _stop)
    try:
        lock = None
        if not replace:  # fail fast when another agent serves; a replacement warms up first (shorter gap)
            lock = lifelock.take(path, __version__, lock_fd)
            lifelock.record(lock, __version__)
        limit_malloc_arenas()
        plugins.warm_up()  # every plugin's imports, once, before the first request
        if lock is None:
            lock = lifelock.take(path, __version__, lock_fd, replace=True, replace_fd=replace_fd)
            lifelock.record(lock, __version__, replacement=True)
        server = AgentServer(path, activated_socket())
    except _Stop:
        return
    # From here SIGTERM asks serve_forever to return (within its poll interval) rather than raising
    # into whatever the main thread runs: an exception inside an accept or a pool submit would
    # drop that request, and socketserver swallows plain exceptions there.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    if ready is not None:
        ready()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        server.server_close()
        server.remove_socket()
        os.close(lock)  # the lock goes with it: a successor may start
