"""Asking and stopping the agent on a socket: `netkit agent status|stop`, `netkit cni install|uninstall`.

Not the launcher's path (it uses json and socket freely).  The agent's pid comes from its status
answer, or, from an agent older than control requests, from the connection's peer credentials
(SO_PEERCRED: the process that listens) — checked to be a ``netkit agent`` process either way, since
a socket-activated listener belongs to systemd.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
from dataclasses import dataclass
from typing import Any

from netkit import __version__
from netkit.agent import lifelock, protocol

TIMEOUT_S = 10


class NoAgent(ConnectionError):
    """Nothing answers on the socket (a ConnectionError: the CLI prints it as one line, like any OSError)."""


@dataclass
class Found:
    """The agent that answered on a socket: its pid and, when it answers control requests, its status."""

    pid: int
    status: dict[str, Any] | None  # None: an agent older than control requests

    @property
    def version(self) -> str:
        """Its netkit version ("" when it is too old to say)."""
        return str(self.status.get("version", "")) if self.status else ""


def status(path: str) -> Found:
    """Ask the agent on ``path`` for its status; NoAgent when none answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            raise NoAgent(f"no agent listens on {path} ({exc.strerror})") from None
        peer = protocol.peer(sock)[0]
        head = json.dumps({"version": __version__, "control": "status"}).encode()
        try:
            # Either may fail on an agent on its way out (replaced, stopped): the connection was
            # accepted by the kernel's backlog, then closed unanswered.
            sock.sendall(struct.pack("!II", len(head), 0) + head)
            code, out = protocol.recv_reply(sock)
        except (OSError, ConnectionError) as exc:
            raise NoAgent(f"the agent on {path} did not answer ({exc})") from None
    finally:
        sock.close()
    if code == 0:
        found = json.loads(out)
        return Found(int(found["pid"]), found)
    return Found(peer, None)  # an agent from before control requests answers "not served"


def stop(path: str, timeout_s: float = lifelock.STOP_WAIT_S) -> Found:
    """Stop the agent on ``path`` gracefully (SIGTERM: it finishes in-flight requests) and wait until
    it is gone; the agent that was stopped.  NoAgent when none answers; TimeoutError when it stays."""
    found = status(path)
    if not lifelock.is_agent(found.pid):
        raise NoAgent(f"the process listening on {path} (pid {found.pid}) is not a netkit agent")
    try:
        os.kill(found.pid, signal.SIGTERM)
    except ProcessLookupError:
        return found
    # An agent from before the life lock holds none: wait for its process too.
    if not lifelock.wait_free(path, timeout_s) or not lifelock.wait_until(lambda: not lifelock.is_agent(found.pid),
                                                                          timeout_s):
        raise TimeoutError(f"the agent (pid {found.pid}) on {path} did not stop within {timeout_s:.0f} s")
    return found


def stop_other_version(path: str) -> Found | None:
    """Stop the agent on ``path`` if it runs another netkit version (an upgrade); the one stopped, or None."""
    try:
        found = status(path)
    except NoAgent:
        return None
    if found.version == __version__:
        return None
    return stop(path)
