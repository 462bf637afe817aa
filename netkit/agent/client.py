"""The launcher's side: hand a request to the agent if one is there.  Standard library only."""

from __future__ import annotations

import _socket  # not socket.py nor json: their imports (enum, re) were half of a launcher's start
import os

TYPE_CHECKING = False  # typing's own import costs a launcher ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from collections.abc import Mapping

from netkit import __version__
from netkit.agent import protocol

TIMEOUT_S = 120
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def json_string(text: str) -> str:
    """``text`` as a JSON string literal, as json.dumps writes it (ASCII, lone surrogates escaped)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
        else:
            out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'


def header(plugin: str, env: Mapping[str, str]) -> bytes:
    """The request's JSON header (see protocol), written without the json module."""
    pairs = ",".join(f"{json_string(k)}:{json_string(v)}" for k, v in env.items())
    return (f'{{"version":{json_string(__version__)},"plugin":{json_string(plugin)},"env":{{{pairs}}}}}'
            .encode("ascii"))


# Why a request was not served (exchange's answer instead of (stdout, exit status)).
NO_AGENT = "no agent"            # no socket, nobody listening, or it died mid-request
NOT_SERVED = "not served"        # the agent asked us to run this one ourselves
OTHER_VERSION = "other version"  # an agent of another netkit version listens


def forward(plugin: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int] | None:
    """(stdout, exit status) from the agent, or None when there is no agent to serve it (see exchange)."""
    got = exchange(plugin, env, stdin)
    return got if isinstance(got, tuple) else None


def exchange(plugin: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int] | str:
    """(stdout, exit status) from the agent, or why it did not serve: NO_AGENT, NOT_SERVED, OTHER_VERSION.

    The caller then runs the request in-process, which is safe because every command is idempotent
    (ADD reuses the lease and remakes the veth; DEL of nothing succeeds).
    """
    path = protocol.socket_path(env)
    if not os.path.exists(path):
        return NO_AGENT
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT_S)
        try:
            sock.connect(path)
        except OSError:
            return NO_AGENT  # a stale socket file: the agent is gone
        env = dict(env)
        netns_path = env.get("CNI_NETNS", "")
        for self_link in ("/proc/self/", "/proc/thread-self/"):
            if netns_path.startswith(self_link):
                # "self" would be the agent there: name this process, alive until the answer.
                env["CNI_NETNS"] = f"/proc/{os.getpid()}/" + netns_path[len(self_link):]
        netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            protocol.send_request(sock, header(plugin, env), stdin, netns)
        finally:
            os.close(netns)
        code, stdout = protocol.recv_reply(sock)
    except OSError:  # ConnectionError and timeouts included
        return NO_AGENT
    finally:
        sock.close()
    if code == protocol.NOT_SERVED:
        return NOT_SERVED
    if code == protocol.OTHER_VERSION:
        return OTHER_VERSION
    return stdout, code
