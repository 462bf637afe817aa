"""The agent's life lock: one file beside the socket that every agent holds (flock) while it lives.

Exactly one agent per socket, however it was started (a launcher, ``netkit agent`` by hand, systemd,
a test): an agent takes the lock before it binds, and the kernel drops it when the agent's last
descriptor of it closes — at exit, or at a SIGKILL, so a crashed agent never leaves it taken.
A launcher that starts an agent takes the lock first and hands the agent that very descriptor, so
the lock is never free between "nobody serves" and "the new agent serves": fifty launchers that
find no agent at once start one.  The holder writes "PID VERSION" into the file, which is how a
replacement finds the agent it replaces.  The file itself is never removed (`netkit cni uninstall`
does, once no agent holds it): a removed lock file would let two agents hold two different files.

Standard library only: the launcher imports it after its answer is written.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time

TYPE_CHECKING = False  # typing's own import costs a launcher ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from collections.abc import Callable

from netkit.agent import protocol

STOP_WAIT_S = 30.0  # how long a replacement or `netkit agent stop` waits for an agent to finish in-flight requests
_POLL_S = 0.02


class LockHeld(Exception):
    """Another agent holds the life lock (its "pid version" is the message)."""


def open_lock(path: str) -> int:
    """A descriptor of the lock file at ``path`` (made if missing, root-only), close-on-exec."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def try_lock(fd: int) -> bool:
    """Take the lock on ``fd`` without waiting; False when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(socket: str) -> tuple[int, str] | None:
    """(pid, version) the agent on ``socket`` wrote into its lock file, or None (never written, unreadable)."""
    try:
        with open(protocol.lock_path(socket), "rb") as f:
            pid, version = f.read(200).decode("ascii", "replace").split()[:2]
        return int(pid), version
    except (OSError, ValueError):
        return None


REPLACEMENT = "replacement"  # the third word of the lock file of an agent that replaced another
SETTLE_S = 60.0  # a replacement younger than this is not replaced in turn (see recent_replacement)


def record(fd: int, version: str, replacement: bool = False) -> None:
    """Write this process's "PID VERSION [replacement]" into the lock file it holds."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {version}{' ' + REPLACEMENT if replacement else ''}\n".encode("ascii"), 0)


def recent_replacement(socket: str) -> bool:
    """True when the agent on ``socket`` replaced another less than SETTLE_S ago.

    Two installations of different versions on one socket would otherwise replace each other's
    agent on every call; so a launcher leaves a fresh replacement alone (and answers in-process).
    """
    path = protocol.lock_path(socket)
    try:
        with open(path, "rb") as f:
            words = f.read(200).split()
        return words[2:3] == [REPLACEMENT.encode()] and time.time() - os.stat(path).st_mtime < SETTLE_S
    except OSError:
        return False


def is_free(socket: str) -> bool:
    """True when no agent holds the life lock of ``socket`` (a missing lock file counts as free)."""
    try:
        fd = os.open(protocol.lock_path(socket), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        return try_lock(fd)  # released with the close below
    finally:
        os.close(fd)


def wait_until(done: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``done()`` until it is true; False when ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def wait_free(socket: str, timeout_s: float = STOP_WAIT_S) -> bool:
    """Wait until no agent holds the life lock of ``socket``; False when ``timeout_s`` passed first."""
    return wait_until(lambda: is_free(socket), timeout_s)


def _wait_lock(fd: int, timeout_s: float, socket: str, version: str) -> bool:
    """Wait for the lock on ``fd``; False after ``timeout_s``.  LockHeld when an agent of ``version``
    took it meanwhile (a launcher found none between the old agent's exit and our next try)."""

    def taken() -> bool:
        if try_lock(fd):
            return True
        now = holder(socket)
        if now is not None and now[1] == version and now[0] != os.getpid():
            raise LockHeld(f"{_describe(socket)}: already this version")
        return False

    return wait_until(taken, timeout_s)


def take(socket: str, version: str, lock_fd: int | None = None, replace: bool = False,
         replace_fd: int | None = None) -> int:
    """Hold the life lock of ``socket`` for this agent's life; the descriptor (close-on-exec).

    ``lock_fd``: a descriptor whose lock the launcher that started us took already (inherited).
    ``replace``: an agent holding the lock is asked to stop (SIGTERM: it finishes in-flight
    requests), then killed if it has not after STOP_WAIT_S; one replacement at a time (the replace
    lock, or ``replace_fd`` when the launcher took it for us).  LockHeld when another agent holds
    the lock and we may not replace it, or it already runs our ``version`` (nothing to replace).
    """
    if lock_fd is not None:
        os.set_inheritable(lock_fd, False)  # never to the delegates and tools the agent execs
        if not try_lock(lock_fd):  # ours already: flock on the same open file succeeds
            raise LockHeld(f"the lock descriptor {lock_fd} is not held by this process")
        return lock_fd
    fd = open_lock(protocol.lock_path(socket))
    if try_lock(fd):
        if replace_fd is not None:
            os.close(replace_fd)  # nobody to replace: held for life it would refuse every later replacement
        return fd
    if not replace:
        os.close(fd)
        raise LockHeld(_describe(socket))
    guard = replace_fd if replace_fd is not None else open_lock(protocol.replace_lock_path(socket))
    os.set_inheritable(guard, False)
    try:
        if not try_lock(guard):
            raise LockHeld(f"another process is replacing {_describe(socket)}")
        old = holder(socket)
        if old is not None and old[1] == version:
            raise LockHeld(f"{_describe(socket)}: already this version")
        if old is not None:
            _signal(old[0], signal.SIGTERM)
        if not _wait_lock(fd, STOP_WAIT_S, socket, version):
            if old is not None:
                _signal(old[0], signal.SIGKILL)
            if not _wait_lock(fd, STOP_WAIT_S, socket, version):
                raise LockHeld(f"{_describe(socket)} did not stop")
        return fd
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(guard)


def is_agent(pid: int) -> bool:
    """True when process ``pid`` runs ``netkit agent`` (a pid read from a file may have been reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return pid > 1 and runs_netkit_agent(argv)


def runs_netkit_agent(argv: list[bytes]) -> bool:
    """True for the command line of ``netkit agent`` however started: ``python -m netkit agent``
    (launchers, systemd) or the console script (``/usr/local/bin/netkit agent``)."""
    netkit = [i for i, a in enumerate(argv) if a == b"netkit" or os.path.basename(a) == b"netkit"]
    return any(b"agent" in argv[i + 1:i + 2] for i in netkit)


def _signal(pid: int, sig: int) -> None:
    if is_agent(pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _describe(socket: str) -> str:
    old = holder(socket)
    who = f"pid {old[0]}, version {old[1]}" if old else "pid unknown"
    return f"an agent ({who}) holds {protocol.lock_path(socket)}"
