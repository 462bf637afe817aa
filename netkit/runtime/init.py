"""``netkit run --init``: a small init as the container's PID 1 (what Docker's ``--init``, tini, does).

Without it CMD is PID 1 of its PID namespace, and the kernel delivers no signal to that PID from
outside unless CMD installed a handler for it: ``python3 -m http.server`` ignores ``netkit stop``'s
SIGTERM and dies only by the SIGKILL after the grace period.  Nor does a CMD that is no init reap the
orphans reparented to it: they stay zombies.

With ``--init`` the process that prepared the namespaces stays PID 1 and starts CMD as its child.  It
blocks every signal it forwards and takes them with sigwaitinfo (a blocked signal is never ignored,
not even by a PID 1 without handlers), passes each to CMD, reaps every child that ends, and exits with
CMD's status (128+N when a signal N killed it), the kernel then killing whatever is left.  No exec:
the already loaded interpreter is the init, nothing extra has to exist in the container's filesystem.
"""

from __future__ import annotations

import ctypes
import os
import signal

from netkit.runtime import process

_PR_SET_NAME = 15
# Never forwarded: the two no process can catch, SIGCHLD (the init's own business), the signals a fault
# of the process itself raises, and the terminal's job-control stops.
_NOT_FORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE,
                  signal.SIGILL, signal.SIGTRAP, signal.SIGSYS, signal.SIGABRT, signal.SIGTTIN, signal.SIGTTOU,
                  signal.SIGTSTP}
FORWARDED = frozenset(signal.valid_signals()) - _NOT_FORWARDED


def become() -> None:
    """Fork CMD's process.  Returns in the child only (which then execs CMD, reporting a failure as
    without --init); the parent stays PID 1 until CMD ends and exits with its status."""
    waited = FORWARDED | {signal.SIGCHLD}
    # An inherited SIGCHLD ignore would have the kernel reap CMD unseen (and the init wait for ever).
    for sig in waited:
        # CMD inherits dispositions and an ignored one survives exec; it must see the defaults.
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # one the C library keeps for itself
    # Blocked before the fork: a signal sent in between stays pending for the loop below.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return
    # From here on this process is the init: whatever happens it ends by os._exit, never by raising
    # into the caller (process._init), which would report a spawn failure for a CMD that runs, and
    # leave PID 1 unwinding the runtime's stack with CMD's fate unknown.
    code = 255
    try:
        # Nothing but the standard streams: every other descriptor the runtime had open (the runner's
        # pipes, the exec-failure pipe) would otherwise live as long as the container, and whoever waits
        # for its EOF (the runner, the detached `run`) would wait that long.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        name = b"netkit-init"
        ctypes.CDLL(None).prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)  # what ps shows as PID 1
        code = _serve(child, waited)
    except BaseException as exc:  # noqa: BLE001 - told on the container's stderr, then 255
        try:
            os.write(2, f"netkit-init: {exc!r}\n".encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def _serve(child: int, waited: set[int]) -> int:
    """Forward signals to ``child`` and reap every child until ``child`` ends; its exit code."""
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD:
            try:
                os.kill(child, info.si_signo)
            except ProcessLookupError:
                pass  # ended already: its SIGCHLD is pending
            continue
        code = _reap(child)
        if code is not None:
            return code


def _reap(child: int) -> int | None:
    """Reap every child that has ended (one SIGCHLD may stand for several); ``child``'s exit code if
    it was among them."""
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if pid == 0:
            return code
        if pid == child:
            code = process.exit_code(status) & 0xFF
