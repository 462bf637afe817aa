"""`netkit agent`: serve plugin requests with warm imports, each in the caller's network namespace.

One thread per request.  The thread joins the namespace the launcher passed (a thread's namespace
is its own; it ends with the request), then runs the same protocol handler the plugins run
in-process.  Requests of one plugin for one attachment are serialised; shared objects (the IPAM store, host
ports, firewall tables) are already serialised by their own locks.  Only root may talk to it:
the socket is mode 0600 and the peer's credentials are checked.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import socketserver
import struct
import threading
from typing import Any

from netkit import __version__, errors
from netkit.agent import protocol
from netkit.cni import handler

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


class _Locks:
    """One lock per key, made on demand."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def get(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _error(msg: str) -> bytes:
    return json.dumps(errors.CNIError(errors.INTERNAL, msg).to_dict("1.1.0")).encode() + b"\n"


class _Handler(socketserver.BaseRequestHandler):
    server: "AgentServer"

    def handle(self) -> None:
        sock: socket.socket = self.request
        fds: list[int] = []
        try:
            if _peer_uid(sock) != 0:
                protocol.send_reply(sock, 1, _error("the netkit agent serves root only"))
                return
            head, stdin, fds = protocol.recv_request(sock)
            header = json.loads(head)
            if header.get("version") != __version__ or len(fds) != 1:
                protocol.send_reply(sock, protocol.NOT_SERVED, b"")
                return
            env: dict[str, str] = {str(k): str(v) for k, v in header["env"].items()}
            if _libc.setns(fds[0], CLONE_NEWNET) != 0:
                protocol.send_reply(sock, 1, _error(f"agent could not join the caller's namespace: "
                                                    f"{os.strerror(ctypes.get_errno())}"))
                return
            # Per plugin and attachment: a bridge ADD waits for the IPAM ADD it delegated, which
            # comes back here for the same container.
            key = f"{header['plugin']}\0{env.get('CNI_CONTAINERID', '')}\0{env.get('CNI_IFNAME', '')}"
            with self.server.locks.get(key):
                out, code = handler.handle(str(header["plugin"]), env, stdin)
            protocol.send_reply(sock, code, out)
        except (OSError, ValueError, KeyError, ConnectionError):
            pass  # the launcher went away or spoke nonsense: it falls back in-process
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The unix-socket server; each request in a thread of its own."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.locks = _Locks()
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(old)


def warm_up() -> None:
    """Import what requests will need, once, before serving."""
    import netkit.firewall.nftables  # noqa: F401
    import netkit.net.links  # noqa: F401
    import netkit.plugins.bridge  # noqa: F401
    import netkit.plugins.ipam  # noqa: F401
    import netkit.plugins.portmap  # noqa: F401


def serve(path: str = protocol.DEFAULT_SOCKET, ready: Any = None) -> None:
    """Serve until interrupted; ``ready`` (a callable) is told once the socket accepts."""
    warm_up()
    server = AgentServer(path)
    if ready is not None:
        ready()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
