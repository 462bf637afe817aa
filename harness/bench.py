"""The benchmarks' skeleton: errors, statistics, the machine's checks and ``main()``.

A script subclasses ``Run`` (set-up, measurement, sanity checks, report) and calls ``main``, which
parses the arguments, checks root and the tools, runs it with Ctrl-C and SIGTERM turned into a clean
abort, always tears down, checks the root namespace gained nothing, prints every problem, and
writes the report's JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from harness import HarnessError, hostns
from harness.agent import Agent

REFERENCE_BIN = "/usr/lib/cni"
EXEC_TIMEOUT_S = 120  # a ceiling for one measured command, not an expectation
# NETKIT_AGENT_SOCKET for in-process rows: no agent listens there, and a launcher starts none there
# either (it makes no socket directory but /run/netkit: netkit/launch/autostart.py).
NO_AGENT = "/nonexistent/agent.sock"


class BenchError(HarnessError):
    """A plugin call or a check failed: the numbers would be meaningless."""


def tail(text: str | bytes, n: int = 500) -> str:
    """The last ``n`` characters of a command's output, whitespace collapsed: for one-line errors."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    """median, p95, min, max, mean and n of samples."""
    return {"median": statistics.median(values), "p95": pct(values, 0.95), "min": min(values),
            "max": max(values), "mean": statistics.fmean(values), "n": len(values)}


def timed(argv: list[str], env: dict[str, str], cwd: str | None = None, stdin: bytes | None = None,
          before: Callable[[], Any] | None = None, own_session: bool = True) -> tuple[float, int, str, str, int]:
    """Run ``argv``: ms from spawn to exit, exit status, stdout, stderr, and the spawn's perf_counter_ns.

    Out of the terminal's foreground process group, so its Ctrl-C reaches only us: the command gets
    up to EXEC_TIMEOUT_S to finish (no half-made attachment), then is killed, and the interrupt goes
    on.  ``own_session`` (a command a user types: `netkit run`, `podman run`) starts a session;
    without it (a plugin exec, as a runtime makes it) only a process group.  The two are not the same
    to the scheduler: with autogroup on (Debian's default) every session is a CPU group of its own,
    so 32 concurrent plugin execs each in a session got 32 shares against the agent's one and
    starved it (scale part (a), agent: 0.84-1.04 s against 0.65-0.71 s in its old shape).
    ``before()`` runs right before the spawn (a poller's start)."""
    if before is not None:
        before()
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                            **({"start_new_session": True} if own_session else {"process_group": 0}))
    try:
        out, err = proc.communicate(stdin, timeout=EXEC_TIMEOUT_S)
    except BaseException as exc:
        try:
            if not isinstance(exc, subprocess.TimeoutExpired):  # an interrupt: let the command finish first
                proc.communicate(timeout=EXEC_TIMEOUT_S)
        finally:
            proc.kill()
            proc.wait()
        raise
    ms = (time.perf_counter_ns() - t0) / 1e6
    return ms, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), t0


def rounds(n: int, one_round: Callable[[int], Any]) -> None:
    """``one_round(0..n-1)``, the progress on stderr (a line of its own once done, also on error)."""
    try:
        for i in range(n):
            one_round(i)
            print(f"\r  round {i + 1}/{n}", end="", file=sys.stderr, flush=True)
    finally:
        print(file=sys.stderr)


def print_commands(title: str, commands: dict[str, str]) -> None:
    """The commands a benchmark ran, one ``what: command line`` each."""
    print(f"\n{title}:")
    for what, line in commands.items():
        print(f"  {what}: {line}")


def ruled(head: str) -> str:
    """A table's head line and a rule as long under it."""
    return f"{head}\n{'-' * len(head)}"


def machine() -> dict[str, Any]:
    """Kernel, CPUs and Python of this machine, for the report."""
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version()}


def apt_install(package: str, present: Callable[[], bool]) -> bool:
    """Install a Debian package (apt-get update and once more if the first try fails) unless
    ``present()``; whether it is present afterwards."""
    if present():
        return True
    print(f"{package} not found: apt-get install -y {package}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")  # debconf questions keep their defaults
    argv = ["apt-get", "install", "-y", package]
    if subprocess.run(argv, env=env, capture_output=True).returncode != 0:
        print("apt-get install failed; apt-get update, then once more", flush=True)
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        subprocess.run(argv, env=env, capture_output=True)
    return present()


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The script's parser, its docstring as help, with ``--json FILE``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="FILE", help="also write every sample and figure here")
    return ap


class Run:
    """One benchmark run: namespaces tagged ``PREFIX<random>``, a temp dir, maybe an agent.

    Subclasses set ``prefix`` and implement ``setup`` (call ``super().setup()`` first), ``measure``,
    ``report`` (print the tables, return the JSON document) and, if they check the sandboxes
    afterwards, ``sanity``.
    """

    prefix = "nkb"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ns = hostns.Namespaces(self.prefix)
        self.tag = self.ns.tag
        self.tmp = ""
        self.bin_dir = ""
        self.agent: Agent | None = None
        self.cleanup_problems: list[str] = []
        self.cleanup_notes: list[str] = []  # what cleanup did that is worth a line, not a problem
        self.cmdline = ""

    def setup(self) -> None:
        """A temp dir with netkit's plugin executables in ``bin_dir``, as `netkit cni install` writes them."""
        from netkit.launch import install

        self.tmp = tempfile.mkdtemp(prefix=f"netkit-{self.prefix}-")
        self.bin_dir = os.path.join(self.tmp, "bin")
        install.install(bin_dir=self.bin_dir, conf_dir=os.path.join(self.tmp, "net.d"))

    def start_agent(self) -> Agent:
        """A `netkit agent` of this run on a socket in its temp dir."""
        self.agent = Agent(os.path.join(self.tmp, "agent.sock")).start()
        return self.agent

    def measure(self) -> None:
        raise NotImplementedError

    def sanity(self) -> list[str]:
        """Problems found in the sandboxes after the measurement (none: the figures stand)."""
        return []

    def report(self) -> dict[str, Any]:
        raise NotImplementedError

    def teardown(self) -> None:
        """Stop the agent, delete every namespace of the run and its temp dir."""
        if self.agent is not None:
            problem = self.agent.stop()
            self.cleanup_problems += [problem] if problem else []
        self.cleanup_problems += self.ns.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _on_term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(ap: argparse.ArgumentParser, make: Callable[[argparse.Namespace], Run], plugins: tuple[str, ...] = (),
         tools: tuple[str, ...] = (), check: Callable[[argparse.Namespace], str] | None = None) -> int:
    """Run the benchmark ``make(args)``; 1 if it aborted, left something or found a problem.

    Usage errors first: ``check(args)`` (a message, or ""), root, the reference ``plugins`` and ``tools``."""
    args = ap.parse_args()
    if check is not None and (message := check(args)):
        ap.error(message)
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces)")
    for name in plugins:
        if not os.access(os.path.join(REFERENCE_BIN, name), os.X_OK):
            ap.error(f"reference plugin {REFERENCE_BIN}/{name} missing (apt-get install containernetworking-plugins)")
    for tool in tools:
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found (apt-get install nftables iptables)")
    run = make(args)
    run.cmdline = shlex.join(sys.orig_argv)
    print(f"command: {run.cmdline}", flush=True)
    root_before = hostns.root_links()
    signal.signal(signal.SIGTERM, _on_term)
    error: str | None = None
    sanity: list[str] = []
    try:
        run.setup()
        run.measure()
        sanity = run.sanity()
    except KeyboardInterrupt:
        error = "interrupted"
    except (HarnessError, OSError, subprocess.SubprocessError) as exc:
        error = str(exc)
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            run.teardown()
        finally:
            signal.signal(signal.SIGINT, old)
    root_after = hostns.root_links()
    new_bridges = sorted(n for n, kind in root_after.items() if kind == "bridge" and n not in root_before)
    if new_bridges:
        run.cleanup_problems.append(f"new bridges in the root namespace: {new_bridges}")
    ours = sorted(n for n in root_after if n.startswith(run.tag))
    if ours:
        run.cleanup_problems.append(f"links named {run.tag}* in the root namespace: {ours}")
    for note in run.cleanup_notes:
        print(f"cleanup: {note}", file=sys.stderr)
    for problem in run.cleanup_problems:
        print(f"CLEANUP PROBLEM: {problem}", file=sys.stderr)
    for problem in sanity:
        print(f"SANITY PROBLEM: {problem}", file=sys.stderr)
    if error is not None:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1
    doc = run.report()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": run.cmdline, **doc, "sanity_problems": sanity,
                       "cleanup_problems": run.cleanup_problems}, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if (run.cleanup_problems or sanity) else 0
