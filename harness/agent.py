"""A `netkit agent` process on a socket of its own, for a test or a benchmark run.

Ready when its socket exists: the agent binds under a temporary name and renames the socket into
place once listening (netkit/agent/server.py), so a socket file that exists accepts.  A stale
socket of an earlier agent on the same path is removed before the start.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

from harness import HarnessError, procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 30  # a ceiling for a loaded machine, not an expectation
# Sockets whose agent someone stops on purpose later (an Agent until its stop, a fixture's network):
# the suite's leftover check (tests/conftest.py) does not count their agents as left behind.
OWNED: set[str] = set()
# A plugin environment's "no agent": in-process, never contacting nor starting one.
NO_AGENT_ENV = {"NETKIT_AGENT": "off"}


def agent_processes() -> dict[int, str]:
    """Every `netkit agent` process on the machine (subcommands such as `agent status` aside): pid -> its
    --socket ("" when it serves the default one)."""
    from netkit.agent import lifelock

    out: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                raw = fh.read().split(b"\0")
        except OSError:
            continue
        if not lifelock.runs_netkit_agent(raw):
            continue
        argv = [a.decode(errors="replace") for a in raw]
        rest = argv[argv.index("agent") + 1:]
        if rest[:1] and rest[0] in ("status", "stop"):
            continue
        out[int(name)] = rest[rest.index("--socket") + 1] if "--socket" in rest[:-1] else ""
    return out


def stop_started(socket: str) -> int | None:
    """Stop the agent a plugin started on ``socket`` (waiting for one still starting to listen); its pid,
    or None when none lives there.  AgentError if it will not answer or stop."""
    from netkit.agent import control, lifelock

    deadline = time.monotonic() + START_TIMEOUT_S
    while not lifelock.is_free(socket):
        try:
            return control.stop(socket).pid
        except control.NoAgent:  # starting (the lock taken, the socket not yet bound) or just gone
            if time.monotonic() > deadline:
                raise AgentError(f"the agent holding {socket}.lock never answered") from None
            time.sleep(0.02)
        except TimeoutError as exc:
            raise AgentError(str(exc)) from None
    return None


def environ_of(pid: int) -> dict[str, str]:
    """Process ``pid``'s environment at its start ({} when it is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            pairs = fh.read().split(b"\0")
    except OSError:
        return {}
    return dict(p.decode(errors="replace").partition("=")[::2] for p in pairs if b"=" in p)


class AgentError(HarnessError):
    """The agent did not start, or died while it was needed."""


class Agent:
    """``python -m netkit agent --socket PATH``, its output in ``PATH.log``.

    ``env``: its whole environment (default: ours without NETKIT_AGENT_SOCKET); ``netns``: a network
    namespace path it starts in (default: ours; it joins each caller's namespace per request anyway).
    It runs in a session of its own, so a terminal's Ctrl-C reaches only the caller, who stops it.
    """

    def __init__(self, path: str, env: dict[str, str] | None = None, netns: str = "") -> None:
        self.path, self.log = path, f"{path}.log"
        self.env = env if env is not None else {k: v for k, v in os.environ.items() if k != "NETKIT_AGENT_SOCKET"}
        # nsenter execs python in place: the pid we hold is the agent's.
        self.argv = [*(["nsenter", f"--net={netns}"] if netns else []),
                     sys.executable, "-m", "netkit", "agent", "--socket", path]
        self.proc: subprocess.Popen[bytes] | None = None
        self.rusage: resource.struct_rusage | None = None  # set by stop()

    def start(self) -> "Agent":
        """Start it and wait until its socket exists; AgentError if it exits or takes too long.

        An agent a plugin started on this socket (after an earlier one here was killed: launchers start
        one when none answers) is stopped first: it holds the socket's life lock."""
        stop_started(self.path)
        if os.path.lexists(self.path):
            os.unlink(self.path)
        OWNED.add(self.path)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(self.path):
            self.check()
            if time.monotonic() > deadline:
                self.stop()
                raise AgentError(f"netkit agent did not listen on {self.path} within {START_TIMEOUT_S} s: "
                                 f"{self.log_tail()}")
            time.sleep(0.02)
        return self

    @property
    def pid(self) -> int:
        """The agent's pid (nsenter execs python in place)."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Started and not exited."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 800) -> str:
        """The end of the agent's output, for an error message."""
        try:
            with open(self.log, "rb") as fh:
                return fh.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def check(self) -> None:
        """A dead agent goes unnoticed (launchers fall back in-process): raise AgentError instead."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AgentError(f"netkit agent (pid {self.proc.pid}) exited with {self.proc.returncode}: "
                             f"{self.log_tail()!r}")

    def cpu_seconds(self) -> float:
        """utime + stime of the agent process."""
        return procs.cpu_ticks(self.pid) / os.sysconf("SC_CLK_TCK")

    def status(self, keys: tuple[str, ...] = ("VmHWM", "VmRSS", "Threads")) -> dict[str, int]:
        """Numeric fields of /proc/PID/status (memory in KiB)."""
        with open(f"/proc/{self.pid}/status") as fh:
            return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in fh) if k in keys}

    def kill(self) -> None:
        """SIGKILL: what a crash or the OOM killer does (the socket file stays, stale)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, grace_s: float = 10) -> str:
        """SIGTERM (the agent removes its socket), SIGKILL after ``grace_s``; a problem, or "".

        Reaped with wait4, so ``rusage`` holds what the agent used over its life."""
        problem = ""
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            deadline = time.monotonic() + grace_s
            while True:
                pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    self.rusage, self.proc.returncode = rusage, os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline and not problem:
                    problem = f"netkit agent (pid {self.proc.pid}) ignored SIGTERM for {grace_s:.0f} s: killed"
                    self.proc.kill()
                time.sleep(0.02)
        try:
            stop_started(self.path)  # one a plugin started here after this one was killed
        except AgentError as exc:
            problem = problem or str(exc)
        if os.path.lexists(self.path):
            os.unlink(self.path)
        OWNED.discard(self.path)
        return problem
