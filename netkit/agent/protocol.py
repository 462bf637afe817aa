"""The wire format between a plugin launcher and the agent.  Standard library only.

Request: 8 bytes (header length, stdin length, network byte order), a JSON header
``{"version", "plugin", "env"}``, the stdin bytes, and the caller's network namespace as a file
descriptor (SCM_RIGHTS) — the agent runs the request in the namespace the plugin was exec'd in.
Reply: 8 bytes (exit status as a signed int, stdout length) and stdout.  Exit status -1 means "not
served, run it yourself": a CNI_NETNS that names another file for the agent than for the caller (a
namespace bound in the caller's private mount namespace).  -2 means the same for a request of another
netkit version: the launcher then has this agent replaced by one of its own version (agents older
than -2 answered -1 to that too).

A control request (``netkit agent status``) has the header ``{"version", "control": NAME}``, no stdin
and no descriptor; it is answered whatever the versions, as JSON on stdout.
"""

from __future__ import annotations

import _socket  # not socket.py: its enum and selectors imports cost every launcher ~5 ms
import os
import struct

from netkit import paths

DEFAULT_SOCKET = f"{paths.RUN_DIR}/agent.sock"
ENV_SOCKET = "NETKIT_AGENT_SOCKET"
NOT_SERVED = -1
OTHER_VERSION = -2
_HEAD = struct.Struct("!II")
_REPLY = struct.Struct("!iI")


ENV_MODE = "NETKIT_AGENT"  # "off": a plugin runs in-process, never asks nor starts an agent
OFF = "off"


def enabled(env: "dict[str, str] | os._Environ[str]") -> bool:
    """False when NETKIT_AGENT=off in ``env``: the plugin neither asks nor starts an agent."""
    return env.get(ENV_MODE, "") != OFF


def socket_path(env: dict[str, str] | os._Environ[str]) -> str:
    """Where the agent listens: $NETKIT_AGENT_SOCKET or /run/netkit/agent.sock."""
    return env.get(ENV_SOCKET) or DEFAULT_SOCKET


def lock_path(socket: str) -> str:
    """The agent's life lock, beside its socket: held by the agent (flock) for as long as it lives."""
    return f"{socket}.lock"


def log_path(socket: str) -> str:
    """Where an agent a launcher started writes its output (capped: see launch/autostart.py)."""
    return f"{socket}.log"


def replace_lock_path(socket: str) -> str:
    """Held by the one process replacing an agent of another version, so that one replaces it."""
    return f"{socket}.replace"


def owned_paths(socket: str) -> list[str]:
    """Every file an agent on ``socket`` may leave beside it (the socket itself included)."""
    return [socket, lock_path(socket), log_path(socket), replace_lock_path(socket)]


def recv_exact(sock: _socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes, or ConnectionError."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return bytes(buf)


def send_request(sock: _socket.socket, header: bytes, stdin: bytes, netns_fd: int) -> None:
    """The request, with the namespace descriptor attached to its first bytes."""
    sock.sendmsg([_HEAD.pack(len(header), len(stdin))],
                 [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", netns_fd))])
    sock.sendall(header + stdin)


def recv_request(sock: _socket.socket) -> tuple[bytes, bytes, list[int]]:
    """(header, stdin, descriptors) of one request."""
    data, ancdata, _flags, _addr = sock.recvmsg(_HEAD.size, _socket.CMSG_LEN(4 * struct.calcsize("i")))
    fds: list[int] = []
    for level, kind, cdata in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            whole = len(cdata) - len(cdata) % 4
            fds += struct.unpack(f"{whole // 4}i", cdata[:whole])
    data += recv_exact(sock, _HEAD.size - len(data)) if len(data) < _HEAD.size else b""
    head_len, stdin_len = _HEAD.unpack(data)
    body = recv_exact(sock, head_len + stdin_len)
    return body[:head_len], body[head_len:], fds


def send_reply(sock: _socket.socket, code: int, stdout: bytes) -> None:
    """A reply: exit status and stdout."""
    sock.sendall(_REPLY.pack(code, len(stdout)) + stdout)


def recv_reply(sock: _socket.socket) -> tuple[int, bytes]:
    """(exit status, stdout) of a reply."""
    code, length = _REPLY.unpack(recv_exact(sock, _REPLY.size))
    return code, recv_exact(sock, length)


def peer(sock: _socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of unix socket ``sock`` (SO_PEERCRED)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


_PRIVILEGE_FIELDS = (b"CapEff:", b"NoNewPrivs:", b"Seccomp:")


def _privileges(pid: int | str) -> tuple[bytes, ...] | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    return tuple(line for line in lines if line.startswith(_PRIVILEGE_FIELDS))


def same_privileges(pid: int) -> bool:
    """True when process ``pid`` has this process's effective capabilities, no_new_privs and seccomp
    mode.  uid 0 alone is not enough to be served: a root whose capabilities were dropped, or that
    runs under seccomp, would have the agent (or the runtime server) do with full privileges what it
    may not do itself; a served request must be one the caller could have run in-process."""
    theirs = _privileges(pid)
    return theirs is not None and theirs == _privileges("self")
