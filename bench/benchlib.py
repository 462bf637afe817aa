"""Helpers shared by the benchmarks: commands as argument lists, namespaces, statistics.

The scripts run as ``python bench/NAME.py``, so this directory is on sys.path: ``import benchlib``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

EXEC_TIMEOUT_S = 120  # a ceiling, not an expectation


def run(argv: list[str], timeout: float = EXEC_TIMEOUT_S, **kw: Any) -> subprocess.CompletedProcess[str]:
    """A command as an argument list (never a shell); the caller checks the status."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """iproute2 with an argument list (never a shell); the caller checks the status."""
    return run(["ip", *args])


def netns_names() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def root_links() -> dict[str, str]:
    """Links of the root namespace: name -> kind (read only)."""
    out = ip("-j", "-d", "link", "show").stdout
    return {link["ifname"]: link.get("linkinfo", {}).get("info_kind", "")
            for link in json.loads(out or "[]")}


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": pct(values, 0.95), "min": min(values),
            "max": max(values), "mean": statistics.fmean(values), "n": len(values)}


def processes_of_run(tmp: str, sandbox_inodes: set[int]) -> dict[int, str]:
    """pid -> command line of the processes a run made: command line, cwd or root in its temp dir,
    or living in one of its sandbox network namespaces (inode numbers)."""
    found = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        hit = bool(tmp) and tmp in cmd
        for link in ("cwd", "root"):
            with contextlib.suppress(OSError):
                hit = hit or bool(tmp) and os.readlink(f"/proc/{pid}/{link}").startswith(tmp)
        with contextlib.suppress(OSError):
            hit = hit or os.stat(f"/proc/{pid}/ns/net").st_ino in sandbox_inodes
        if hit:
            found[pid] = cmd or "?"
    return found


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT_START_TIMEOUT_S = 30


class BenchError(RuntimeError):
    """A plugin call or a check failed: the numbers would be meaningless."""


class AgentOfTheRun:
    """A `netkit agent` for one benchmark run (mixed into a bench class that has ``tmp``)."""

    tmp: str
    cleanup_problems: list[str]
    agent: subprocess.Popen[bytes] | None = None
    agent_sock = ""
    agent_log = ""

    def start_agent(self) -> None:
        """`netkit agent` on a socket of this run, in the root namespace (it joins each caller's
        namespace per request), in a session of its own (a terminal Ctrl-C reaches only us; the
        ``finally`` stops it)."""
        self.agent_sock = os.path.join(self.tmp, "agent.sock")
        self.agent_log = os.path.join(self.tmp, "agent.log")
        env = {k: v for k, v in os.environ.items() if k != "NETKIT_AGENT_SOCKET"}
        with open(self.agent_log, "wb") as log:
            self.agent = subprocess.Popen([sys.executable, "-m", "netkit", "agent", "--socket", self.agent_sock],
                                          cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while True:
            self.check_agent()
            if os.path.exists(self.agent_sock):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    try:
                        probe.connect(self.agent_sock)   # listening: serve() binds and listens at once
                        return
                    except OSError:
                        pass
            if time.monotonic() > deadline:
                raise BenchError(f"the agent did not listen on {self.agent_sock} within {AGENT_START_TIMEOUT_S} s")
            time.sleep(0.02)

    def check_agent(self) -> None:
        """A dead agent would go unnoticed (launchers fall back in-process): abort instead."""
        if self.agent is not None and self.agent.poll() is not None:
            with open(self.agent_log, "rb") as fh:
                tail = fh.read()[-800:].decode(errors="replace")
            raise BenchError(f"the agent (pid {self.agent.pid}) exited with {self.agent.returncode}: {tail!r}")

    def agent_cpu(self) -> float:
        """utime + stime of the agent process, seconds."""
        assert self.agent is not None
        with open(f"/proc/{self.agent.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop_agent(self) -> None:
        """SIGTERM (serve() unwinds and removes the socket); SIGKILL after 10 s, reported."""
        if self.agent is None or self.agent.poll() is not None:
            return
        self.agent.terminate()
        try:
            self.agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            self.agent.wait()
            self.cleanup_problems.append(f"the agent (pid {self.agent.pid}) ignored SIGTERM and was killed")
