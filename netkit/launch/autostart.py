"""A launcher that found no agent starts one, after its own answer is written.

The launcher has already answered in-process (no call waits for an agent to warm up), written its
stdout and let go of the runtime's pipes; then, when no agent lives on the socket, it starts one
detached: a session and process group of its own, cwd "/", stdin /dev/null, stdout and stderr to
``<socket>.log`` (emptied at start when it has grown past LOG_CAP), started with ``posix_spawn``
(the launcher's cold path has no subprocess module, and a vfork-style spawn costs ~1 ms).

Exactly one agent however many launchers find none at once: the launcher takes the agent's life
lock (agent/lifelock.py) without waiting and hands that descriptor to the agent (``--lock-fd``),
so the lock is never free in between; a launcher that cannot take it leaves (an agent lives or is
starting).  An agent of another netkit version is replaced the same way: one launcher takes the
replace lock and starts an agent with ``--replace``, which stops the old one and takes over.

Only the default socket's directory (/run/netkit) is made here: a socket pointed elsewhere whose
directory does not exist (the suite's and benchmarks' "/nonexistent/..." for "no agent") starts
nothing.  Standard library only.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's own import costs a launcher ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from collections.abc import Mapping

from netkit import __version__
from netkit.agent import client, lifelock, protocol

LOG_CAP = 1 << 20  # bytes: an agent's log past this at start is emptied (it holds start lines and tracebacks)
# Not handed on to the agent: the request's own variables, per-process test hooks (failpoints, a
# boot id override: armed for one plugin exec, never for a long-lived agent), a socket activation
# meant for us.
_NOT_INHERITED = ("NETKIT_FAILPOINTS", "NETKIT_BOOT_ID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def after_fallback(why: str, env: Mapping[str, str]) -> int | None:
    """The launcher answered in-process because of ``why`` (client.exchange): start or replace the
    agent where that is called for; the new agent's pid, or None when nothing was started."""
    if os.geteuid() != 0 or not protocol.enabled(env):
        return None  # the agent serves root only
    if why == client.NO_AGENT:
        return start(env)
    if why == client.OTHER_VERSION:
        return replace(env)
    return None


def _lock_fd(path: str) -> int | None:
    """A descriptor of the lock file ``path``; None when its directory is missing and not ours to make."""
    if os.path.dirname(path) == os.path.dirname(protocol.DEFAULT_SOCKET):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        return lifelock.open_lock(path)
    except FileNotFoundError:
        return None


def start(env: Mapping[str, str]) -> int | None:
    """Start an agent on the socket ``env`` names unless one lives or is starting; its pid, or None."""
    socket = protocol.socket_path(env)
    fd = _lock_fd(protocol.lock_path(socket))
    if fd is None:
        return None
    try:
        if not lifelock.try_lock(fd):
            return None  # an agent lives, or another launcher is starting one
        return spawn(socket, env, ["--lock-fd", str(fd)], fd)
    finally:
        os.close(fd)  # the agent holds its own copy: the lock lives on with it


def replace(env: Mapping[str, str]) -> int | None:
    """Start an agent of this version that replaces the other-version agent on the socket; its pid, or None."""
    socket = protocol.socket_path(env)
    old = lifelock.holder(socket)
    if old is not None and old[1] == __version__:
        return None  # replaced already: the answer we got came from the agent on its way out
    if lifelock.recent_replacement(socket):
        return None  # another installation's fresh replacement: no tug of war (one replacement per SETTLE_S)
    fd = _lock_fd(protocol.replace_lock_path(socket))
    if fd is None:
        return None
    try:
        if not lifelock.try_lock(fd):
            return None  # another launcher is replacing it
        return spawn(socket, env, ["--replace", "--replace-fd", str(fd)], fd)
    finally:
        os.close(fd)


def agent_env(env: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment: the launcher's without the request (CNI_*) and _NOT_INHERITED, and
    the launcher's import path, so the agent runs the very netkit the launcher runs."""
    out = {k: v for k, v in env.items() if not k.startswith("CNI_") and k not in _NOT_INHERITED}
    out["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return out


def _keep_only(fds: tuple[int, ...]) -> None:
    """Mark every descriptor above stderr close-on-exec but ``fds``: a pipe the runtime leaked to the
    launcher must not stay open for the agent's whole life."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in fds:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the directory's own descriptor, closed by now
    for fd in fds:
        os.set_inheritable(fd, True)


def spawn(socket: str, env: Mapping[str, str], extra: list[str], *keep: int) -> int:
    """``python -s -P -m netkit agent --socket SOCKET EXTRA`` detached, with descriptors ``keep``; its pid."""
    argv = [sys.executable, "-s", "-P", "-m", "netkit", "agent", "--socket", socket, *extra]
    log = os.open(protocol.log_path(socket), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(log).st_size > LOG_CAP:
            os.ftruncate(log, 0)
        _keep_only(keep)
        os.chdir("/")  # the launcher is about to exit: its cwd is the agent's, and must pin no mount
        return os.posix_spawn(argv[0], argv, agent_env(env), setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ])
    finally:
        os.close(log)
