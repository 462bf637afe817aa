#!/usr/bin/env python3
"""Issue 16's plugin targets on the conflist podman 4.3 writes, netkit against the reference, one run.

Run as root from the repository root::

    .venv/bin/python bench/podman_shape.py [--runs 20] [--warmup 2] [--concurrent 16] [--json out.json]

Every config is podman's shape: cniVersion 0.4.0, a bridge (isGateway, ipMasq, hairpinMode) with a
host-local-style IPAM (one range with its gateway, a default route), then ``portmap`` as a plugin of
its own with the bridge's result as prevResult.  Each plugin is exec'd as a runtime does (libcni:
exec, CNI_* environment, config on stdin) through ``ip netns exec HOST`` into a sandbox host, the
same for both sides; nothing is subtracted.  Three netkit variants against the reference:

- default install: the launchers ``netkit cni install`` writes and the agent the first plugin exec
  starts.  Until that auto-start is in, the agent is started by this run (harness/agent.py, the same
  ``python -m netkit agent`` process): flip ``AUTOSTART`` below and nothing else changes.
- in-process: ``NETKIT_AGENT=off`` (and NETKIT_AGENT_SOCKET where no agent listens, so that code
  without that switch is in-process too).
- first ADD: a bridge+IPAM ADD where no agent runs yet on the launcher's socket (with auto-start,
  that exec starts one and still answers in-process); the agent it started, if any, is stopped.

Rows: VERSION (in-process), bridge+IPAM ADD, chain ADD (bridge, then portmap), chain DEL (portmap,
then bridge), all interleaved per round in rotating order; then ``--concurrent`` bridge+IPAM ADDs
started at once (wall time from the first spawn to the last exit), default install and reference
alternating.  ``--compare SRC`` adds both netkit variants of another source tree (e.g. ``git archive
d54988e | tar -x -C /tmp/old``: its launchers and its agent, this venv's packages) to every round,
interleaved: old against new in one run.  See bench/README.md.  Not part of the test suite.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import procs  # noqa: E402
from harness.agent import Agent  # noqa: E402
from harness.bench import NO_AGENT, BenchError, Run, machine, main, parser, rounds, ruled, summary  # noqa: E402
from harness.cnichain import Network, exec_in  # noqa: E402

# The one line to change once the first plugin exec starts the agent itself (autostart): then this
# run starts none, and the default-install rows measure exactly what `netkit cni install` leaves.
AUTOSTART = True

CNI_VERSION = "0.4.0"                 # what podman 4.3 writes in its conflists
DEFAULT, INPROC, REFERENCE = "default install", "in-process", "reference"
OLD_DEFAULT, OLD_INPROC = f"{DEFAULT} (--compare)", f"{INPROC} (--compare)"
SHORT = {DEFAULT: "d", INPROC: "i", REFERENCE: "r", OLD_DEFAULT: "od", OLD_INPROC: "oi"}
FIRST = "first ADD, no agent yet"
VERSION_ROW, ADD_ROW, CHAIN_ADD_ROW, CHAIN_DEL_ROW = "VERSION", "ADD bridge+ipam", "ADD chain", "DEL chain"
CONCURRENT_ROW = "concurrent ADD bridge+ipam, wall"
HOSTPORT_BASE = 21000                 # round k publishes hostPort BASE + k
STOP_TIMEOUT_S = 10
Samples = dict[str, dict[str, list[float]]]


def _words(pid: int) -> list[str]:
    """The command line of ``pid`` split in words ([] once it has exited: /proc changes as we read)."""
    try:
        return procs.cmdline(pid).split()
    except OSError:
        return []


def agents_on(socket: str) -> list[int]:
    """Pids of `netkit agent` processes serving ``socket`` (the one an auto-starting launcher spawned)."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and {"agent", socket} <= set(_words(int(e)))]


def stop_agents_on(socket: str) -> list[str]:
    """SIGTERM every agent on ``socket``, SIGKILL after STOP_TIMEOUT_S; problems (a kill), if any."""
    problems = []
    pids = agents_on(socket)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while (left := [p for p in pids if _words(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in left:
        problems.append(f"agent pid {pid} on {socket} ignored SIGTERM: killed")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return problems


class Bench(Run):
    """The rounds and the concurrent batches; netkit's firewall backend as installed (no
    NETKIT_FIREWALL_BACKEND: detected, nftables on Debian 12, whose iptables is iptables-nft)."""

    prefix = "nkp"

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.samples: Samples = {}
        self.warmup_samples: Samples = {}
        self.impls = (DEFAULT, INPROC, REFERENCE) + ((OLD_DEFAULT, OLD_INPROC) if args.compare else ())
        self.concurrent: dict[str, list[float]] = {i: [] for i in self.impls if i not in (INPROC, OLD_INPROC)}
        self.port = HOSTPORT_BASE
        self.count = 0
        self.firsts = 0
        self.socket = ""
        self.agent_pid = 0
        self.old_agent: Agent | None = None
        self.concurrent_cpu: dict[str, list[dict[str, float]]] = {}

    def network(self, impl: str, key: str, subnet: str, socket: str | None, label: str) -> Network:
        """One podman-shaped network of ``impl`` in sandbox host ``<tag>-<key>``."""
        bin_dir = self.old_bin if impl in (OLD_DEFAULT, OLD_INPROC) else self.bin_dir
        net = Network(f"{self.tag}-{key}", bin_dir, impl != REFERENCE, f"podman-{key}", f"{self.tag}{key}",
                      subnet, os.path.join(self.tmp, "data", key), socket, "", label, cni_version=CNI_VERSION,
                      agent_off=impl in (INPROC, OLD_INPROC), podman_keys=True)
        self.ns.add(net.host, lo=True)
        return net

    def setup(self) -> None:
        super().setup()
        self.socket = os.path.join(self.tmp, "agent.sock")
        if not AUTOSTART:
            self.agent_pid = self.start_agent().pid
        sockets = {DEFAULT: self.socket, INPROC: NO_AGENT, REFERENCE: None, OLD_INPROC: NO_AGENT}
        self.old_bin = ""
        if self.args.compare:
            sockets[OLD_DEFAULT] = self.compare_setup(os.path.abspath(self.args.compare))
        self.nets = {impl: self.network(impl, SHORT[impl], f"10.{70 + k}.0.0/16", sockets[impl], impl)
                     for k, impl in enumerate(self.impls)}
        # The first-ADD network: its own host and socket directory (renewed per sample: no agent there yet).
        self.first_net = self.network(DEFAULT, "f", "10.74.0.0/16", None, FIRST)
        print(f"podman-shaped configs (cniVersion {CNI_VERSION}); sandbox hosts "
              + ", ".join(f"{n.label}: {n.host}" for n in (*self.nets.values(), self.first_net))
              + f"; agent {'started by the first plugin exec' if AUTOSTART else f'pid {self.agent_pid} (harness)'}"
              f" on {self.socket}", flush=True)

    def compare_setup(self, src: str) -> str:
        """Launchers and a warm agent of source tree ``src`` (this interpreter, this venv's packages);
        the agent's socket."""
        self.old_bin = os.path.join(self.tmp, "old-bin")
        env = dict(os.environ, PYTHONPATH=src)
        env.pop("NETKIT_AGENT_SOCKET", None)
        subprocess.run([sys.executable, "-P", "-c", "from netkit.launch import install; import sys; "
                        f"install.install(bin_dir={self.old_bin!r}, conf_dir={os.path.join(self.tmp, 'old-net.d')!r})"],
                       env=env, check=True, capture_output=True)
        with open(os.path.join(self.old_bin, "netkit-bridge"), encoding="utf-8") as fh:
            if src not in fh.read():
                raise BenchError(f"the launchers of {src} do not import it")
        self.old_agent = Agent(os.path.join(self.tmp, "old-agent.sock"), env=env)
        self.old_agent.argv.insert(1, "-P")  # not the cwd (this repository) first on sys.path: PYTHONPATH
        self.old_agent.start()
        return self.old_agent.path

    def containers(self, net: Network, n: int) -> list[str]:
        names = [f"{net.host}c{self.count + k}" for k in range(n)]
        self.count += n
        self.ns.add(*names)
        return names

    def check_agent(self) -> None:
        """A dead agent would turn the default-install rows into in-process ones without a word."""
        if self.agent is not None:
            self.agent.check()
        if self.old_agent is not None:
            self.old_agent.check()
        elif not agents_on(self.socket) and self.count:
            raise BenchError(f"no agent serves {self.socket}: the default-install rows would be in-process")

    def version(self, net: Network) -> float:
        e = exec_in(net.host, [net.exe(net.type("bridge"))], net.env("VERSION"), b'{"cniVersion":"0.4.0"}')
        if e.code != 0 or CNI_VERSION not in (e.json() or {}).get("supportedVersions", []):
            raise BenchError(f"VERSION of {net.label} failed ({e.why()})")
        return e.ms

    def first_add(self, container: str) -> tuple[float, dict[str, Any]]:
        """One bridge+IPAM ADD with no agent on the launcher's (new) socket: its ms and result.
        Any agent it started is stopped (untimed) before the next measured exec."""
        net = self.first_net
        self.firsts += 1
        sock_dir = os.path.join(self.tmp, f"first{self.firsts}")
        os.makedirs(sock_dir)
        net.agent = os.path.join(sock_dir, "agent.sock")
        try:
            e, result = net.add(container)
        finally:
            self.cleanup_problems += stop_agents_on(net.agent)
        return e.ms, result

    def one_round(self, i: int, into: Samples) -> None:
        def put(row: str, impl: str, ms: float) -> None:
            into.setdefault(row, {}).setdefault(impl, []).append(ms)

        # Each first in turn (no one always meets a warmer cache), the first ADD among the others:
        # it runs in the same conditions as the in-process ADD it is held against (not right after
        # the namespace deletions, whose clean-up the kernel does meanwhile).
        turns = (*self.impls, FIRST)
        k = i % len(turns)
        order = turns[k:] + turns[:k]
        self.check_agent()
        versions = [x for x in order if x in (INPROC, REFERENCE, OLD_INPROC)]
        for impl in versions:
            put(VERSION_ROW, impl, self.version(self.nets[impl]))
        port = self.port
        self.port += 1
        nets = {**self.nets, FIRST: self.first_net}
        conts = {impl: self.containers(nets[impl], 1)[0] for impl in order}
        results: dict[str, dict[str, Any]] = {}
        for impl in order:
            if impl == FIRST:
                ms, results[impl] = self.first_add(conts[impl])
                put(ADD_ROW, FIRST, ms)
                continue
            ms, results[impl], execs = self.nets[impl].chain_add(conts[impl], port, checked=True)
            put(ADD_ROW, impl, execs[0].ms)
            put(CHAIN_ADD_ROW, impl, ms)
        for impl in order:
            if impl == FIRST:
                self.first_net.delete(conts[impl], results[impl])  # untimed; it may start an agent too
                self.cleanup_problems += stop_agents_on(self.first_net.agent or "")
                continue
            put(CHAIN_DEL_ROW, impl, self.nets[impl].chain_del(conts[impl], port, results[impl], checked=True)[0])
        self.ns.delete(*conts.values())
        self.check_agent()

    def concurrent_round(self, impl: str) -> float:
        """``--concurrent`` bridge+IPAM ADDs started at once: ms from the first spawn to the last exit."""
        net = self.nets[impl]
        conts = self.containers(net, self.args.concurrent)
        results: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        go = threading.Barrier(len(conts) + 1)

        def one(c: str) -> None:
            go.wait()
            try:
                results[c] = net.add(c)[1]
            except BenchError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=one, args=(c,)) for c in conts]
        for t in threads:
            t.start()
        agent = {DEFAULT: self.agent, OLD_DEFAULT: self.old_agent}.get(impl)
        # The auto-started agent is no harness Agent: its CPU is read by pid (the one on the socket).
        started = agents_on(self.socket) if impl == DEFAULT and agent is None else []
        agent_cpu = (lambda: agent.cpu_seconds()) if agent is not None else (
            (lambda: procs.cpu_ticks(started[0]) / os.sysconf("SC_CLK_TCK")) if started else (lambda: 0.0))
        cpu0 = agent_cpu()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        go.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = (time.perf_counter() - t0) * 1000
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Where the wall time went: CPU of the execs (ip netns exec + launcher or plugin, reaped by
        # us) and of the agent, against the 2 x wall the machine's CPUs had.
        self.concurrent_cpu.setdefault(impl, []).append({
            "execs_cpu_ms": (kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime) * 1000,
            "agent_cpu_ms": (agent_cpu() - cpu0) * 1000})
        if errors:
            raise BenchError(errors[0])
        addrs = {r["ips"][0]["address"] for r in results.values()}
        if len(addrs) != len(conts):
            raise BenchError(f"{impl}: {len(conts)} concurrent ADDs gave {len(addrs)} distinct addresses")
        for c in conts:  # untimed, one at a time
            net.delete(c, results[c])
        self.ns.delete(*conts)
        return wall

    def measure(self) -> None:
        for i in range(self.args.warmup):  # the first ADD creates the bridge and the nft table
            self.one_round(i, self.warmup_samples)
        rounds(self.args.runs, lambda i: self.one_round(i, self.samples))
        sides = list(self.concurrent)
        for impl in sides:  # warm-up: the agent's thread pool and the address store
            self.concurrent_round(impl)
        self.concurrent_cpu.clear()

        def conc(i: int) -> None:
            k = i % len(sides)
            for impl in sides[k:] + sides[:k]:
                self.concurrent[impl].append(self.concurrent_round(impl))
        rounds(self.args.concurrent_rounds, conc)
        self.check_agent()

    def sanity(self) -> list[str]:
        problems = []
        for net in (*self.nets.values(), self.first_net):
            problems += net.leftovers()
        return problems

    def teardown(self) -> None:
        if self.old_agent is not None:
            problem = self.old_agent.stop()
            self.cleanup_problems += [problem] if problem else []
        if AUTOSTART:  # this run's agents: the default install's, any a first ADD's exec left
            for sock in (self.socket, *(os.path.join(self.tmp, f"first{n}", "agent.sock")
                                        for n in range(1, self.firsts + 1))):
                self.cleanup_problems += stop_agents_on(sock)
        super().teardown()

    def report(self) -> dict[str, Any]:
        m = machine()
        print(f"\n{self.args.runs} interleaved rounds, ms (no baseline subtracted; every exec through "
              f"`ip netns exec HOST`); kernel {m['kernel']}, {m['cpus']} CPUs, Python {m['python']}")
        print(ruled(f"{'operation':<34} {'variant':<24} {'median':>8} {'p95':>8} {'ref median':>10} {'ratio':>6}"))
        for row, per in self.samples.items():
            ref = summary(per[REFERENCE])["median"] if REFERENCE in per else None
            for impl, xs in per.items():
                s = summary(xs)
                ratio = f"{s['median'] / ref:.2f}" if ref and impl != REFERENCE else ""
                print(f"{row:<34} {impl:<24} {s['median']:>8.1f} {s['p95']:>8.1f} "
                      f"{(f'{ref:.1f}' if ref else '-'):>10} {ratio:>6}")
        r = summary(self.concurrent[REFERENCE])
        for impl, xs in self.concurrent.items():
            d = summary(xs)
            print(f"{CONCURRENT_ROW + f' x{self.args.concurrent}':<34} {impl:<24} {d['median']:>8.1f} {d['p95']:>8.1f} "
                  f"{r['median']:>10.1f} {d['median'] / r['median']:>6.2f}")
        print(f"CPU per concurrent round (median, ms; {os.cpu_count()} CPUs): "
              + "; ".join(f"{impl}: execs {summary([c['execs_cpu_ms'] for c in cs])['median']:.0f}"
                          + (f", agent {summary([c['agent_cpu_ms'] for c in cs])['median']:.0f}"
                             if impl != REFERENCE else "")
                          for impl, cs in self.concurrent_cpu.items()))
        print(f"\n{DEFAULT}: {'agent started by the first plugin exec' if AUTOSTART else 'the launchers with a warm agent started by this run (harness/agent.py)'};"
              f" {INPROC}: NETKIT_AGENT=off NETKIT_AGENT_SOCKET={NO_AGENT}; {FIRST}: launchers, a socket no agent"
              " serves yet.\nADD chain = bridge exec (its IPAM delegated) + portmap exec; DEL chain = portmap + bridge.")
        return {"runs": self.args.runs, "warmup_rounds": self.args.warmup, "machine": m, "unit": "ms",
                "cni_version": CNI_VERSION, "autostart": AUTOSTART, "compare": self.args.compare,
                "configs": {impl: {"bridge": net.bridge_conf(), "portmap": net.portmap_conf(HOSTPORT_BASE, {})}
                            for impl, net in self.nets.items()},
                "env": {impl: net.env("ADD") for impl, net in {**self.nets, FIRST: self.first_net}.items()},
                "rows": {row: {impl: {"summary": summary(xs), "samples": xs} for impl, xs in per.items()}
                         for row, per in self.samples.items()},
                "concurrent": {"n": self.args.concurrent, "wall_ms": self.concurrent,
                               "summary": {impl: summary(xs) for impl, xs in self.concurrent.items()},
                               "cpu_ms": self.concurrent_cpu},
                "warmup_samples": self.warmup_samples}


if __name__ == "__main__":
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=20, help="measured rounds (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted rounds first (default 2)")
    ap.add_argument("--concurrent", type=int, default=16, help="bridge+IPAM ADDs started at once (default 16)")
    ap.add_argument("--concurrent-rounds", type=int, default=6, help="rounds of them per side (default 6)")
    ap.add_argument("--compare", metavar="SRC", default="", help="also another netkit source tree's variants")
    sys.exit(main(ap, Bench, ("bridge", "host-local", "portmap"), ("nft", "iptables-save"),
                  lambda a: "--runs, --warmup and --concurrent-rounds must be at least 1"
                  if min(a.runs, a.warmup, a.concurrent_rounds) < 1 else ""))
