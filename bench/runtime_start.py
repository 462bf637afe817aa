#!/usr/bin/env python3
"""Container start-up of netkit's runtime against podman, measured side by side in one run.

Run as root from the repository root::

    .venv/bin/python bench/runtime_start.py [--runs 10] [--warmup 1] [--no-podman] [--agent] [--json out.json]

(1) From spawning ``netkit run -d -p HOSTPORT:80 -- python3 -m http.server 80`` to that port answering an
HTTP GET on 127.0.0.1:HOSTPORT, (2) the wall time of ``netkit run --rm --net=none -- true`` and ``netkit run
--rm -- true``; the same with podman 4.3 (harness/podman.py) if it can be set up.  Each runtime runs under
``nsenter --net`` in a sandbox host of its own, where the HTTP client polls too.  With ``--agent`` netkit
runs twice in every round: the installed ``netkit`` (a thin client of the runtime server beside the agent)
and "old", the whole CLI in the command's own process as before that server.  See bench/README.md.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import HarnessError  # noqa: E402
from harness import podman as hp  # noqa: E402
from harness.bench import (EXEC_TIMEOUT_S, NO_AGENT, REFERENCE_BIN, BenchError, Run, machine, main,  # noqa: E402
                           parser, print_commands, rounds, ruled, summary, tail, timed)
from harness.hostns import Netns  # noqa: E402
from netkit import __version__ as NETKIT_VERSION  # noqa: E402
from netkit.net import netns as nk_netns  # noqa: E402

NETKIT, PODMAN = "netkit", "podman"
# With --agent: netkit's command as it was before the runtime server (the whole CLI in the command's
# process; the plugins still through the agent), interleaved with the thin client: old vs new.
NETKIT_CLI = "netkit-cli"
NETKITS = (NETKIT, NETKIT_CLI)
# That command: the console script pip wrote before, the click group straight away (no thin client).
OLD_SCRIPT = """#!{python}
import re
import sys
from netkit.cli.commands import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""
NSENTER = hp.NSENTER
NETKIT_EXE = os.path.join(os.path.dirname(sys.executable), "netkit")
CONTAINER_PORT = 80
PORT_BASE = {"http-python": 18000, "http-busybox": 17000, "http-podman": 19000}   # + run number (warm-up included)
POLL_INTERVAL_S = 0.005                       # a new connect+GET attempt every 5 ms
ATTEMPT_TIMEOUT_S = 0.5                       # an attempt with no HTTP status line by then is dropped
READY_DEADLINE_S = 30.0
REQUEST = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
INDEX = b"<html><body>netkit bench</body></html>\n"

# Rows: key -> label.  "ready" rows are spawn of `run -d -p` to the first HTTP answer.
ROWS = {
    "ready": "HTTP answers after `run -d -p` (a)",
    "ready_same": "HTTP answers, busybox httpd in both (b)",
    "run_d": "`run -d -p` command returns (a)",
    "rm_f": "`rm -f` running container (c)",
    "true_none": "`run --rm --net=none -- true`",
    "true_bridge": "`run --rm -- true` (bridge)",
}


class ImplError(BenchError):
    """A command of one runtime (``impl``) failed: the numbers would be meaningless."""

    def __init__(self, msg: str, impl: str) -> None:
        super().__init__(msg)
        self.impl = impl


# ---- the HTTP poller ---------------------------------------------------------------------------------
class Poller:
    """Polls http://127.0.0.1:PORT/ from inside a network namespace, on a thread of its own.

    Once started it enters the namespace (``netkit.net.netns.entered``: this thread only) and waits for
    ``go``; then it opens a new non-blocking connection every POLL_INTERVAL_S, sends a GET when it connects,
    and stops at the first HTTP status line; each attempt is dropped after ATTEMPT_TIMEOUT_S.  Attempts
    overlap, so one that hangs (podman's conmon holds the host port open before the DNAT rule exists: a
    connection can land in its never-accepted queue) costs only that attempt: the resolution stays 5 ms.
    """

    def __init__(self, netns_path: str, port: int) -> None:
        self.netns_path, self.port = netns_path, port
        self.ready, self.go, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.t_answer: int | None = None           # perf_counter_ns of the first status line
        self.status = ""
        self.error = ""
        self.attempts = self.refused = self.dropped = self.timed_out = 0
        self.thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(10) or self.error:
            raise BenchError(f"HTTP poller could not start: {self.error or 'timeout'}")

    def _main(self) -> None:
        try:
            with nk_netns.entered(self.netns_path):
                self.ready.set()
                while not self.go.wait(0.05):
                    if self.stop.is_set():
                        return
                self._poll()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()

    def _poll(self) -> None:
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, list[Any]] = {}    # sock -> [started, sent, buffer]

        def drop(s: socket.socket) -> None:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(s)
            pending.pop(s, None)
            s.close()

        start = time.perf_counter()
        next_at = start
        try:
            while not self.stop.is_set():
                now = time.perf_counter()
                if now - start > READY_DEADLINE_S:
                    self.error = f"no HTTP answer on 127.0.0.1:{self.port} within {READY_DEADLINE_S:.0f} s"
                    return
                if now >= next_at:
                    next_at = max(next_at + POLL_INTERVAL_S, now)
                    self.attempts += 1
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    err = s.connect_ex(("127.0.0.1", self.port))
                    if err in (0, errno.EINPROGRESS):
                        pending[s] = [now, False, b""]
                        sel.register(s, selectors.EVENT_WRITE)
                    else:
                        self.refused += 1
                        s.close()
                for key, _ in sel.select(max(0.0, next_at - time.perf_counter())):
                    s = key.fileobj  # type: ignore[assignment]
                    st = pending.get(s)
                    if st is None:
                        continue
                    if not st[1]:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self.refused += 1
                            drop(s)
                            continue
                        try:
                            s.send(REQUEST)
                        except OSError:
                            self.dropped += 1
                            drop(s)
                            continue
                        st[1] = True
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:                  # reset or closed before a status line
                        self.dropped += 1
                        drop(s)
                        continue
                    st[2] += data
                    if b"\r\n" in st[2]:
                        t = time.perf_counter_ns()
                        line = st[2].split(b"\r\n", 1)[0].decode(errors="replace")
                        if line.startswith("HTTP/"):
                            self.t_answer, self.status = t, line
                            return
                        self.dropped += 1
                        drop(s)
                now = time.perf_counter()
                for s, st in list(pending.items()):
                    if now - st[0] > ATTEMPT_TIMEOUT_S:
                        self.timed_out += 1
                        drop(s)
        finally:
            for s in list(pending):
                drop(s)
            sel.close()


class StartRun(Run):
    prefix = "nkr"

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.sandbox = {NETKIT: f"{self.tag}-n", PODMAN: f"{self.tag}-p"}
        self.hosts: dict[str, Netns] = {}
        self.nk_root = self.www = ""
        self.python = shutil.which("python3", path=hp.CLEAN_PATH) or "python3"
        self.store: hp.Store | None = None            # made in setup: podman's store is the temp dir
        self.pm: hp.Podman | None = None
        self.podman_ok = False
        self.podman_skip_reason = "" if not args.no_podman else "--no-podman"
        self.have_busybox = os.path.exists(hp.BUSYBOX)
        self.versions: dict[str, str] = {}
        self.seq = 0                                   # run number: container names and host ports
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.warmup_samples: dict[str, dict[str, list[float]]] = {}
        self.baseline: list[float] = []
        self.poll_stats: dict[str, list[dict[str, Any]]] = {NETKIT: [], NETKIT_CLI: [], PODMAN: []}
        self.old_exe = ""                              # OLD_SCRIPT, written in setup with --agent
        self.commands: dict[str, str] = {}
        self.agent_cpu_s = 0.0

    # ---- commands ------------------------------------------------------------------------------------
    def env(self, impl: str) -> dict[str, str]:
        if impl == PODMAN:
            assert self.pm is not None
            return self.pm.env
        # never a machine-wide agent: this run's (--agent), or a path where none listens
        return hp.clean_env(NETKIT_AGENT_SOCKET=self.agent.path if self.agent else NO_AGENT)

    def argv(self, impl: str, *args: str) -> list[str]:
        if impl in NETKITS:
            exe = NETKIT_EXE if impl == NETKIT else self.old_exe
            return [NSENTER, f"--net={self.hosts[NETKIT].path}", exe, "--root", self.nk_root, *args]
        assert self.pm is not None
        return self.pm.argv(*args)

    def show(self, impl: str, argv: list[str]) -> str:
        """The command as a shell line, podman's config variables in front."""
        if impl in NETKITS:
            return f"(cd {shlex.quote(self.www)} && {shlex.join(argv)})"
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env(PODMAN).items() if k not in ("PATH", "HOME"))
        return f"{env} {shlex.join(argv)}"

    def timed(self, impl: str, argv: list[str], before: Any = None) -> tuple[float, int, str, str, int]:
        """harness.bench.timed in the runtime's environment and directory."""
        return timed(argv, self.env(impl), self.www if impl in NETKITS else self.tmp, before=before)

    def must(self, impl: str, argv: list[str], what: str) -> tuple[float, str]:
        ms, code, out, err, _ = self.timed(impl, argv)
        if code != 0:
            raise ImplError(f"{what} failed (exit {code}): {self.show(impl, argv)}: {tail(err or out)}", impl)
        return ms, out

    # ---- setup / teardown ----------------------------------------------------------------------------
    def add_host(self, impl: str) -> None:
        self.hosts[impl] = self.ns.add(self.sandbox[impl], lo=True)[0]
        self.store.inodes.add(os.stat(self.hosts[impl].path).st_ino)

    def setup(self) -> None:
        """The temp dir is podman's store too (set up only for podman): its teardown reaps the processes
        and unmounts the mounts of both runtimes."""
        super().setup()
        self.store = hp.Store(self.tmp, f"localhost/{self.tag}-busybox:latest")
        self.nk_root = os.path.join(self.tmp, "netkit-root")
        self.www = os.path.join(self.tmp, "www")           # netkit containers' cwd: what their servers serve
        os.makedirs(self.www)
        with open(os.path.join(self.www, "index.html"), "wb") as f:
            f.write(INDEX)
        self.add_host(NETKIT)
        if self.args.agent:
            self.start_agent()
            self.old_exe = os.path.join(self.tmp, "netkit-cli")
            with open(self.old_exe, "w") as f:
                f.write(OLD_SCRIPT.format(python=sys.executable))
            os.chmod(self.old_exe, 0o755)
        proc = subprocess.run([self.python, "--version"], capture_output=True, text=True)
        self.versions["container python3"] = f"{self.python} ({(proc.stdout or proc.stderr).strip()})"
        if not self.args.no_podman:
            try:
                self.setup_podman()
            except (HarnessError, OSError, subprocess.SubprocessError) as exc:
                self.podman_skip_reason = f"podman setup failed: {exc}"
        print(f"sandbox host netns: {self.sandbox[NETKIT]} (netkit, --root {self.nk_root})"
              + (f", {self.sandbox[PODMAN]} (podman)" if self.podman_ok else ""), flush=True)
        if not self.podman_ok:
            print(f"podman skipped: {self.podman_skip_reason}", flush=True)

    def setup_podman(self) -> None:
        hp.install_packages()
        self.store.setup()
        self.add_host(PODMAN)
        self.pm = hp.Podman(self.store, self.store.write_conf("conf", [REFERENCE_BIN]), self.hosts[PODMAN].path)
        self.commands["podman import"] = self.pm.import_image({"index.html": INDEX})
        self.versions.update(self.pm.versions())
        self.podman_ok = True

    def teardown(self) -> None:
        """Containers through their runtimes in their sandboxes (network DEL needs them), the agent, the store."""
        if self.nk_root and os.path.isdir(os.path.join(self.nk_root, "containers")):
            for cid in os.listdir(os.path.join(self.nk_root, "containers")):
                proc = subprocess.run(self.argv(NETKIT, "rm", "-f", cid), env=self.env(NETKIT), cwd=self.www,
                                      capture_output=True, timeout=EXEC_TIMEOUT_S)
                self.cleanup_notes.append(f"netkit container {cid[:12]} left at cleanup: rm -f exit {proc.returncode}")
        if self.pm is not None:
            left = self.pm.remove_all()
            if left:
                self.cleanup_notes.append(f"podman containers left at cleanup: {left}")
        if self.agent is not None:  # its command line names the temp dir: not a leftover process
            self.cleanup_problems += [p for p in [self.agent.stop()] if p]
        if self.store is not None:
            self.store.teardown(wait_s=10)
            self.cleanup_problems += self.store.problems
            self.cleanup_notes += self.store.notes
        super().teardown()

    # ---- the measurements ------------------------------------------------------------------------------
    def _put(self, into: dict[str, dict[str, list[float]]], row: str, impl: str, ms: float) -> None:
        into.setdefault(row, {NETKIT: [], NETKIT_CLI: [], PODMAN: []})[impl].append(ms)

    def http_run(self, impl: str, server: str, into: dict[str, dict[str, list[float]]], row: str,
                 record_side_rows: bool) -> None:
        """run -d -p PORT:80 SERVER; time to the first HTTP answer on 127.0.0.1:PORT; then rm -f."""
        self.seq += 1
        key = "http-podman" if impl == PODMAN else f"http-{server}"
        port = PORT_BASE[key] + self.seq
        name = f"{self.tag}-{'p' if impl == PODMAN else 'n'}{self.seq}"
        if impl in NETKITS:
            cmd = ["python3", "-m", "http.server", str(CONTAINER_PORT)] if server == "python" else \
                  ["busybox", "httpd", "-f", "-p", str(CONTAINER_PORT)]
            argv = self.argv(impl, "run", "-d", "--name", name, "-p", f"{port}:{CONTAINER_PORT}", "--", *cmd)
            rm_argv = self.argv(impl, "rm", "-f", name)
        else:
            argv = self.argv(PODMAN, "run", "-d", "--name", name, "-p", f"{port}:{CONTAINER_PORT}",
                             self.store.image, "busybox", "httpd", "-f", "-p", str(CONTAINER_PORT))
            rm_argv = self.argv(PODMAN, "rm", "-f", "-t", "0", name)
        poller = Poller(self.hosts[PODMAN if impl == PODMAN else NETKIT].path, port)
        poller.start()
        try:
            ms, code, out, err, t0 = self.timed(impl, argv, before=poller.go.set)
            if code != 0:
                raise ImplError(f"{self.show(impl, argv)} failed (exit {code}): {tail(err or out)}", impl)
            poller.thread.join(READY_DEADLINE_S + 5)
        finally:
            poller.stop.set()
            poller.go.set()
            poller.thread.join(5)
        if poller.t_answer is None:
            raise ImplError(f"{self.show(impl, argv)}: {poller.error or 'the HTTP poller gave no answer'}", impl)
        if poller.status.split()[1:2] != ["200"]:
            raise ImplError(f"{self.show(impl, argv)}: HTTP answer {poller.status!r}, expected 200", impl)
        self._put(into, row, impl, (poller.t_answer - t0) / 1e6)
        self.poll_stats[impl].append({"row": row, "port": port, "attempts": poller.attempts, "refused": poller.refused,
                                      "dropped": poller.dropped, "timed_out": poller.timed_out})
        if record_side_rows:
            self._put(into, "run_d", impl, ms)
        rm_ms, _ = self.must(impl, rm_argv, "rm -f")
        if record_side_rows:
            self._put(into, "rm_f", impl, rm_ms)
        self.commands.setdefault(f"{impl} {row}", self.show(impl, argv))
        self.commands.setdefault(f"{impl} rm", self.show(impl, rm_argv))

    def true_run(self, impl: str, none: bool, into: dict[str, dict[str, list[float]]]) -> None:
        if impl in NETKITS:
            argv = self.argv(impl, "run", "--rm", *(["--net=none"] if none else []), "--", "true")
        else:
            argv = self.argv(PODMAN, "run", "--rm", *(["--network", "none"] if none else []), self.store.image, "true")
        row = "true_none" if none else "true_bridge"
        ms, _ = self.must(impl, argv, row)
        self._put(into, row, impl, ms)
        self.commands.setdefault(f"{impl} {row}", self.show(impl, argv))

    def one_round(self, i: int, into: dict[str, dict[str, list[float]]], baseline: list[float]) -> None:
        impls = [NETKIT, *([NETKIT_CLI] if self.old_exe else []), *([PODMAN] if self.podman_ok else [])]
        order = impls[i % len(impls):] + impls[:i % len(impls)]    # rotate who goes first
        base_argv = [NSENTER, f"--net={self.hosts[NETKIT].path}", "/bin/true"]
        ms, _ = self.must(NETKIT, base_argv, "baseline")
        baseline.append(ms)
        self.commands.setdefault("baseline", shlex.join(base_argv))
        for impl in order:
            self.http_run(impl, "python" if impl in NETKITS else "busybox", into, "ready", True)
        if self.have_busybox:
            for impl in order:
                self.http_run(impl, "busybox", into, "ready_same", False)
        for none in (True, False):
            for impl in order:
                self.true_run(impl, none, into)

    def measure(self) -> None:
        print(f"{self.args.warmup} warm-up + {self.args.runs} measured rounds", flush=True)
        for i in range(self.args.warmup):        # first runs create the bridges, page cache: not counted
            try:
                self.one_round(i, self.warmup_samples, [])
            except BenchError as exc:
                if not self.podman_ok or getattr(exc, "impl", "") != PODMAN:
                    raise
                self.podman_ok = False       # podman fails here: go on with netkit alone and say why
                self.podman_skip_reason = f"podman failed in the warm-up round: {exc}"
                print(f"\n{self.podman_skip_reason}", file=sys.stderr)
                self.one_round(i, self.warmup_samples, [])
        cpu0 = self.agent.cpu_seconds() if self.agent else 0.0
        rounds(self.args.runs, lambda i: self.one_round(i, self.samples, self.baseline))
        if self.agent:
            self.agent.check()  # a dead agent would have turned the netkit rows into in-process ones
            self.agent_cpu_s = self.agent.cpu_seconds() - cpu0
            if self.agent_cpu_s <= 0:
                raise BenchError("the agent used no CPU time: did netkit's plugins fall back in-process?")

    def sanity(self) -> list[str]:
        """After all runs: no container left in either runtime, no namespace or veth left in a sandbox."""
        problems = []
        cdir, nsdir = os.path.join(self.nk_root, "containers"), os.path.join(self.nk_root, "netns")
        left = os.listdir(cdir) if os.path.isdir(cdir) else []
        if left:
            problems.append(f"netkit: container records left: {[c[:12] for c in left]}")
        if os.path.isdir(nsdir) and os.listdir(nsdir):
            problems.append(f"netkit: namespaces left in {nsdir}: {os.listdir(nsdir)[:5]}")
        expected = {NETKIT: ["lo", "netkit0"], PODMAN: ["cni-podman0", "lo"]}
        for impl in (NETKIT, PODMAN) if self.podman_ok else (NETKIT,):
            links = sorted(self.hosts[impl].links())
            if links != expected[impl]:
                problems.append(f"{impl} sandbox {self.sandbox[impl]}: links {links}, expected {expected[impl]}")
        if self.podman_ok and self.pm is not None:
            out = self.pm("ps", "-aq", check=False).stdout.split()
            if out:
                problems.append(f"podman: containers left: {out}")
        return problems

    def table(self) -> str:
        old = bool(self.old_exe)
        head = (f"{'ms':<42} {'netkit med':>10} {'p95':>7} {'podman med':>10} {'p95':>7} {'ratio':>6}"
                + (f" {'old med':>8} {'p95':>7} {'ratio':>6} {'new/old':>7}" if old else ""))
        lines = [ruled(head)]
        for row, label in ROWS.items():
            if row not in self.samples:
                continue
            nk = summary(self.samples[row][NETKIT])
            cell = f"{label:<42} {nk['median']:>10.1f} {nk['p95']:>7.1f}"
            p = summary(self.samples[row][PODMAN]) if self.podman_ok and self.samples[row][PODMAN] else None
            if p:
                cell += f" {p['median']:>10.1f} {p['p95']:>7.1f} {nk['median'] / p['median']:>6.2f}"
            else:
                cell += f" {'-':>10} {'-':>7} {'-':>6}"
            if old:
                o = summary(self.samples[row][NETKIT_CLI])
                cell += (f" {o['median']:>8.1f} {o['p95']:>7.1f} {o['median'] / p['median'] if p else 0:>6.2f}"
                         f" {nk['median'] / o['median']:>7.2f}")
            lines.append(cell)
        return "\n".join(lines)

    def report(self) -> dict[str, Any]:
        args = self.args
        base = summary(self.baseline)
        print(f"\n{args.runs} interleaved rounds, ms; kernel {platform.release()}, {os.cpu_count()} CPUs; netkit "
              f"{NETKIT_VERSION}" + (f", podman {self.versions.get('podman')} ({self.versions.get('runc')}, CNI "
                                     f"backend, overlay storage)" if self.podman_ok else "")
              + f"; container python3: {self.versions['container python3']}")
        print(f"baseline `nsenter --net=SANDBOX /bin/true`: median {base['median']:.1f}, p95 {base['p95']:.1f}")
        print(f"\n{self.table()}\n")
        print("ratio = netkit median / podman median. Times are from spawning the command (under nsenter) to:")
        if self.old_exe:
            print("old = the whole CLI in the command's process, as before the runtime server (plugins through the")
            print("    agent all the same); new/old = netkit median / old median, interleaved in every round.")
        print("(a) the first HTTP 200 from 127.0.0.1:HOSTPORT inside the sandbox (netkit: python3 -m http.server;")
        print("    podman: busybox httpd), resp. the command's exit; (b) netkit runs the same static busybox httpd as")
        print("    the podman image; (c) netkit rm -f kills with SIGKILL; podman rm -f -t 0 likewise.")
        print(f"Polling: a new connect+GET every {POLL_INTERVAL_S * 1000:.0f} ms, attempts overlap, each dropped "
              f"after {ATTEMPT_TIMEOUT_S * 1000:.0f} ms.")
        if not self.podman_ok:
            print(f"podman: not measured: {self.podman_skip_reason}")
        print("netkit's plugins: " + (f"through the warm agent this run started ({self.agent_cpu_s:.2f} s of its CPU "
                                      f"time over the measured rounds)" if args.agent else "in-process (no agent)"))
        print_commands("commands (as in the first round; HOSTPORT and NAME change every run)", self.commands)
        removed = self.store.removed if self.store else []
        if removed:
            print(f"removed what podman made outside the temp dir: {', '.join(removed)}")
        return {
            "runs": args.runs, "warmup_rounds": args.warmup,
            "machine": machine(),
            "versions": {"netkit": NETKIT_VERSION, **self.versions}, "unit": "ms",
            "netkit_agent": {"used": args.agent, "cpu_s_measured_rounds": self.agent_cpu_s},
            "podman": {"measured": self.podman_ok, "skip_reason": self.podman_skip_reason,
                       "ulimits": hp.ulimits() if self.pm else None},
            "baseline_nsenter_true": {"summary": base, "samples": self.baseline},
            "rows": {row: {"label": ROWS[row], **{impl: {"summary": summary(v), "samples": v}
                                                  for impl, v in self.samples[row].items() if v}}
                     for row in ROWS if row in self.samples},
            "warmup_samples": self.warmup_samples, "poll_stats": self.poll_stats, "commands": self.commands,
            "removed_podman_paths": removed,
        }


def check(args: Any) -> str:
    """A usage error, or ""."""
    if args.runs < 1 or args.warmup < 1:
        return "--runs and --warmup must be at least 1 (the first runs also create the bridges)"
    if not os.access(NSENTER, os.X_OK):
        return f"{NSENTER} not found (apt-get install util-linux)"
    if not os.access(NETKIT_EXE, os.X_OK):
        return f"{NETKIT_EXE} not found: run this with the venv's python (.venv/bin/python)"
    return ""


ap = parser(__doc__)
ap.add_argument("--runs", type=int, default=10, help="measured rounds (default 10)")
ap.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (default 1)")
ap.add_argument("--no-podman", action="store_true", help="measure netkit alone")
ap.add_argument("--agent", action="store_true",
                help="netkit's plugins answered by a warm `netkit agent` this run starts (the process the default "
                     "install's first plugin exec starts); default: in-process, no agent")

if __name__ == "__main__":
    sys.exit(main(ap, StartRun, check=check))
