"""How plugins reach, start and stop the resolver daemon of a records directory.

The daemon listens on an abstract unix socket named after its records directory.  Abstract
sockets belong to a network namespace, which is what a daemon serves (it binds the gateways of
the bridges there): a plugin finds the daemon of its own namespace, and a sandbox "host" of the
test suite has its own.  No socket file is left behind by a daemon that died.

A plugin calls ``sync`` with the records lock held after changing the records: the running daemon
reloads and answers once the new records are served, or a new daemon starts and answers once it
listens; the lock makes sure one daemon starts however many plugins run at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import struct
import subprocess
import sys

from netkit import errors
from netkit.dns import records

START_WAIT = 30.0  # seconds a plugin waits for a new daemon to listen: a hang guard only
_REPLY_WAIT = 10.0  # seconds for a running daemon's answer (a reload reads every records file)
LOG = ".daemon.log"


def address(data_dir: str) -> bytes:
    """The abstract socket name of the daemon serving ``data_dir``."""
    digest = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:32]
    return b"\0netkit-dns:" + digest.encode()


def listen(data_dir: str) -> socket.socket:
    """The daemon's control socket (OSError when another daemon of the directory listens)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(address(data_dir))
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    return sock


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def accept(listener: socket.socket) -> tuple[socket.socket, str] | None:
    """One command from a client of the daemon's own user; None for anything else."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return None
    try:
        if _peer_uid(conn) not in (0, os.geteuid()):
            conn.close()
            return None
        conn.settimeout(2.0)  # a client that connects and says nothing must not stall the loop long
        line = conn.recv(256).decode("ascii", "replace").strip()
    except OSError:
        conn.close()
        return None
    return conn, line


def reply(conn: socket.socket, text: str) -> None:
    """Answer one command."""
    with contextlib.suppress(OSError):
        conn.sendall(text.encode() + b"\n")


def ask(data_dir: str, command: str) -> str | None:
    """The daemon's answer to ``command``; None when no daemon of ``data_dir`` lives here."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(_REPLY_WAIT)
        try:
            sock.connect(address(data_dir))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        try:
            sock.sendall(command.encode() + b"\n")
            out = b""
            while not out.endswith(b"\n") and (chunk := sock.recv(256)):
                out += chunk
        except OSError as exc:
            raise errors.CNIError(errors.TRY_AGAIN_LATER, "the DNS daemon did not answer", str(exc)) from None
    return out.decode("ascii", "replace").strip() or None


def reload_answer(served: int, failed: list[str]) -> str:
    """The daemon's answer to a reload (and its first line once started): "ok N [failed=ADDR,...]" or "exit"."""
    if not served and not failed:
        return "exit"
    return f"ok {served}" + (f" failed={','.join(sorted(failed))}" if failed else "")


def _failed(answer: str) -> list[str]:
    for word in answer.split():
        if word.startswith("failed="):
            return word[len("failed="):].split(",")
    return []


def sync(data_dir: str) -> list[str]:
    """Have this namespace's daemon of ``data_dir`` serve the records as they are (records lock held);
    the gateway addresses it could not listen on (port 53 taken there by another server)."""
    answer = ask(data_dir, "reload")
    if answer is None:
        if not records.load_all(data_dir):
            return []
        answer = start(data_dir)
    return _failed(answer)


def stop(data_dir: str) -> bool:
    """Stop the daemon of ``data_dir`` in this namespace; False when none ran."""
    return ask(data_dir, "stop") is not None


def _daemon_env() -> dict[str, str]:
    # The plugin's own import path, so the daemon runs the very netkit (and dnslib) the plugin runs;
    # nothing of the request (CNI_*) or of a test's per-exec hooks.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "NETKIT_FAILPOINTS"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def start(data_dir: str) -> str:
    """Start a daemon for ``data_dir`` in this namespace and wait until it listens (records lock held);
    its first answer (``reload_answer``)."""
    r, w = os.pipe()
    log = os.open(os.path.join(data_dir, LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        proc = subprocess.Popen([sys.executable, "-s", "-P", "-m", "netkit.dns", data_dir, str(w)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(w,),
                                start_new_session=True, cwd="/", env=_daemon_env())
    except OSError as exc:
        os.close(r)
        raise errors.CNIError(errors.INTERNAL, "cannot start the DNS daemon", str(exc)) from None
    finally:
        os.close(w)
        os.close(log)
    try:
        answer = b""
        while not answer.endswith(b"\n") and select.select([r], [], [], START_WAIT)[0]:
            chunk = os.read(r, 256)
            if not chunk:
                break
            answer += chunk
    finally:
        os.close(r)
        proc.wait()  # the first process leaves at once, its child is the daemon
    text = answer.decode(errors="replace").strip()
    if not text.startswith(("ok", "exit")):
        raise errors.CNIError(errors.INTERNAL, "the DNS daemon did not start",
                              text or f"see {os.path.join(data_dir, LOG)}")
    return text
