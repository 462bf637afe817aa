"""The launcher's side: hand a request to the agent if one is there.  Standard library only."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping

from netkit import __version__
from netkit.agent import protocol

TIMEOUT_S = 120


def forward(plugin: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int] | None:
    """(stdout, exit status) from the agent, or None when there is no agent to serve it.

    None means: no socket, nobody listening, an agent of another netkit version, or an agent that
    died mid-request — the caller then runs the request in-process, which is safe because every
    command is idempotent (ADD reuses the lease and remakes the veth; DEL of nothing succeeds).
    """
    path = protocol.socket_path(env)
    if not os.path.exists(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT_S)
        try:
            sock.connect(path)
        except OSError:
            return None  # a stale socket file: the agent is gone
        env = dict(env)
        netns_path = env.get("CNI_NETNS", "")
        for self_link in ("/proc/self/", "/proc/thread-self/"):
            if netns_path.startswith(self_link):
                # "self" would be the agent there: name this process, alive until the answer.
                env["CNI_NETNS"] = f"/proc/{os.getpid()}/" + netns_path[len(self_link):]
        header = json.dumps({"version": __version__, "plugin": plugin, "env": env}).encode()
        netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            protocol.send_request(sock, header, stdin, netns)
        finally:
            os.close(netns)
        code, stdout = protocol.recv_reply(sock)
    except OSError:  # ConnectionError and timeouts included
        return None
    finally:
        sock.close()
    if code == protocol.NOT_SERVED:
        return None
    return stdout, code
