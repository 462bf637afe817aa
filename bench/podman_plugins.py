#!/usr/bin/env python3
"""podman 4.3 as the CNI client: netkit's plugins against the reference plugins, in one run.

Run as root from the repository root::

    .venv/bin/python bench/podman_plugins.py [--runs 20] [--warmup 2] [--agent [--no-conmon-env]] [--json out.json]

Wall time of ``podman run --rm --network NET IMAGE true``, with and without ``-p HOSTPORT:80``, where NET
is what ``podman network create`` writes, once with netkit's plugin types and once as written (the
reference plugins), interleaved, plus ``--network none`` as the floor; each in a sandbox host of its own
(harness/podman.py).  ``--agent`` points netkit's plugins at a warm ``netkit agent``.  See bench/README.md.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import bench  # noqa: E402
from harness import podman as hp  # noqa: E402
from harness import procs  # noqa: E402
from harness.agent import Agent, AgentError, agent_processes, stop_started  # noqa: E402
from harness.bench import BenchError, Run, main, parser, summary, tail  # noqa: E402
from harness.cnichain import attachment_chains, dnat_ports  # noqa: E402
from harness.hostns import Netns  # noqa: E402
from netkit import __version__ as NETKIT_VERSION  # noqa: E402
from netkit.agent import protocol as agent_protocol  # noqa: E402

NETKIT, REFERENCE, FLOOR = "netkit", "reference", "none"
VARIANTS = hp.VARIANTS
PREFIX = "10.89.0."
PORT_BASE = 20000                          # + a counter over every -p run (warm-up and checks included)
CONTAINER_PORT = 80
PROBED = ("netkit-bridge", "netkit-ipam", "netkit-portmap")
ROWS = {"plain": "`run --rm --network NET IMAGE true`",
        "port": "`run --rm --network NET -p HOSTPORT:80 IMAGE true`"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def nat_text(ns: Netns) -> str:
    """Every NAT/filter rule of a sandbox as text: nft's ruleset and the iptables views."""
    return "\n".join(ns.run(*argv).stdout for argv in (("nft", "list", "ruleset"), ("iptables-save", "-t", "nat"),
                                                       ("iptables-legacy-save", "-t", "nat")))


def timed(pm: hp.Podman, *args: str) -> float:
    """Wall time in ms from spawning ``podman ARGS`` to its exit, which must be 0 (harness.bench.timed)."""
    ms, code, out, err, _ = bench.timed(pm.argv(*args), pm.env, pm.store.dir)
    if code != 0:
        raise BenchError(f"{pm.show(*args)} failed (exit {code}): {tail(err or out)}")
    return ms


def settled(busy: Callable[[], Any], step: float = 0.1) -> bool:
    """Wait up to 10 s while ``busy()`` (the DEL may run in conmon's clean-up, just after podman returns);
    whether it ended."""
    deadline = time.monotonic() + 10
    while busy() and time.monotonic() < deadline:
        time.sleep(step)
    return not busy()


def agent_counters(agent: Agent) -> tuple[int, int]:
    """(read syscalls, CPU clock ticks) of the whole agent, exited request threads included."""
    agent.check()
    return procs.read_syscalls(agent.pid), procs.cpu_ticks(agent.pid)


class PodmanRun(Run):
    prefix = "nkq"

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.conmon_env = not args.no_conmon_env
        # One network name per variant: all configurations share one storage, so teardown removes each
        # variant's containers with the configuration (and sandbox) of its network.
        self.network = {NETKIT: f"{self.tag}-nk", REFERENCE: f"{self.tag}-ref"}
        self.sandbox = {NETKIT: f"{self.tag}-n", REFERENCE: f"{self.tag}-r", FLOOR: f"{self.tag}-0"}
        self.hosts: dict[str, Netns] = {}
        self.pm: dict[str, hp.Podman] = {}
        self.store: hp.Store | None = None
        self.data_dir: dict[str, str] = {}
        self.conflists: dict[str, dict[str, Any]] = {}
        self.ports: list[int] = []
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.warmup_samples: dict[str, dict[str, list[float]]] = {}
        self.lease_left = {NETKIT: 0, REFERENCE: 0}          # runs whose lease was still there at exit
        self.agent_use: dict[str, dict[str, int]] = {}       # impl -> runs, runs with agent reads, ticks
        self.probe: list[dict[str, str]] = []
        self.probe_agent = (0, 0)
        self.checks: list[str] = []
        self.commands: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.machine_agent = os.path.exists(agent_protocol.DEFAULT_SOCKET)
        self.load_before = loadavg()

    def next_port(self) -> int:
        self.ports.append(PORT_BASE + len(self.ports) + 1)
        return self.ports[-1]

    def leases(self, variant: str) -> list[str]:
        d = os.path.join(self.data_dir[variant], self.network[variant])
        return sorted(n for n in os.listdir(d) if n[0].isdigit()) if os.path.isdir(d) else []

    # ---- setup -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.store = store = hp.Store(self.tmp, f"localhost/{self.tag}-busybox:latest")
        store.setup()
        # Without --agent the plugins get a socket path where nothing listens: never a machine-wide agent.
        sock = os.path.join(self.tmp, "agent.sock" if self.args.agent else "no-agent/agent.sock")  # no dir: no agent started
        self.hosts = dict(zip(self.sandbox, self.ns.add(*self.sandbox.values(), lo=True)))
        store.inodes.update(os.stat(ns.path).st_ino for ns in self.hosts.values())
        # conmon starts `podman container cleanup` (which runs the CNI DEL) with conmon_env_vars, not with
        # podman's environment: the socket goes there too, unless --no-conmon-env (without it a DEL would
        # start an agent on the default socket).
        conmon = (f'conmon_env_vars = ["PATH={hp.CLEAN_PATH}", "{agent_protocol.ENV_SOCKET}={sock}"]\n'
                  if self.conmon_env else "")

        def podman(conf: str, dirs: list[str], host: str, net_dir: str = "") -> hp.Podman:
            nk = conf in (NETKIT, "probe")
            return hp.Podman(store, store.write_conf(conf, dirs, conmon if nk else "", net_dir), self.hosts[host].path,
                             **({agent_protocol.ENV_SOCKET: sock} if nk else {}))
        self.pm = {FLOOR: podman(FLOOR, [bench.REFERENCE_BIN], FLOOR), NETKIT: podman(NETKIT, [self.bin_dir], NETKIT),
                   REFERENCE: podman(REFERENCE, [bench.REFERENCE_BIN], REFERENCE)}
        # The env check: the same network and sandbox as netkit's, plugins behind logging wrappers.
        self.pm["probe"] = podman("probe", [os.path.join(self.tmp, "probe", "bin")], NETKIT,
                                  store.net_dirs[self.pm[NETKIT].conf])
        self.commands["import"] = self.pm[FLOOR].import_image({})
        self.versions.update(self.pm[FLOOR].versions())
        for variant in VARIANTS:
            self.data_dir[variant] = os.path.join(self.tmp, variant, "leases")
            written, self.conflists[variant], _ = self.pm[variant].create_network(
                self.network[variant], variant, self.data_dir[variant])
            types = [p["type"] for p in written["plugins"]]
            if types != ["bridge", "portmap", "firewall", "tuning"]:
                raise BenchError(f"podman network create wrote plugins {types}, expected bridge, portmap, firewall, "
                                 f"tuning (the shape harness/podman.py adapts)")
            self.commands[f"{variant} network create"] = self.pm[variant].show(
                "network", "create", "--disable-dns", "--subnet", hp.SUBNET, "--gateway", hp.GATEWAY,
                self.network[variant])
        if self.args.agent:
            self.agent = Agent(sock, env=hp.clean_env(), netns=self.hosts[NETKIT].path).start()
            self.commands["agent"] = shlex.join(self.agent.argv)
        for variant in VARIANTS:
            self.check_variant(variant)
        self.env_probe()
        print(f"sandboxes: {self.sandbox[NETKIT]} (netkit), {self.sandbox[REFERENCE]} (reference), "
              f"{self.sandbox[FLOOR]} (--network none); temp dir {self.tmp}", flush=True)

    def check_variant(self, variant: str) -> None:
        """Untimed: a container on NET with a published port gets an address in the subnet and a DNAT
        rule; after rm, no lease, rule or veth is left."""
        pm, host, port = self.pm[variant], self.hosts[variant], self.next_port()
        name = f"{self.tag}-check-{variant}"
        pm("run", "-d", "--name", name, "--network", self.network[variant], "-p", f"{port}:{CONTAINER_PORT}",
           pm.store.image, "sleep", "60")
        try:
            addr = pm("exec", name, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
            if f"inet {PREFIX}" not in addr:
                raise BenchError(f"{variant}: container eth0 has no address in {hp.SUBNET}: {tail(addr)}")
            if port not in dnat_ports(nat_text(host)):
                raise BenchError(f"{variant}: no DNAT rule for host port {port} in {host.name}")
            if len(self.leases(variant)) != 1:
                raise BenchError(f"{variant}: leases {self.leases(variant)}, expected one")
        finally:
            pm("rm", "-f", "-t", "0", name, check=False)
        if not settled(lambda: self.leases(variant) or port in dnat_ports(nat_text(host))):
            raise BenchError(f"{variant}: lease or DNAT for {port} left after rm -f")
        self.checks.append(f"{variant}: address {addr.split('inet ')[1].split()[0]}, DNAT for host port {port} while "
                           f"running; lease and DNAT gone after rm")

    def env_probe(self) -> None:
        """Untimed: one measured-shape run on netkit's network, each of netkit's plugins behind a wrapper
        that logs the command, NETKIT_AGENT_SOCKET as the plugin got it and its parent's command line."""
        probe_dir = os.path.join(self.tmp, "probe", "bin")
        log = os.path.join(self.tmp, "probe", "exec.log")
        os.makedirs(probe_dir)
        for plugin in PROBED:
            path = os.path.join(probe_dir, plugin)
            with open(path, "w") as f:
                f.write(f"""#!/bin/sh
printf '%s\\t%s\\t%s\\t%s\\n' {plugin} "$CNI_COMMAND" "${{{agent_protocol.ENV_SOCKET}-<unset>}}" \\
    "$(tr '\\0' ' ' < /proc/$PPID/cmdline)" >> {shlex.quote(log)}
exec {shlex.quote(os.path.join(self.bin_dir, plugin))} "$@"
""")
            os.chmod(path, 0o755)
        before = agent_counters(self.agent) if self.agent else (0, 0)
        timed(self.pm["probe"], "run", "--rm", "--network", self.network[NETKIT], "-p",
              f"{self.next_port()}:{CONTAINER_PORT}", self.pm["probe"].store.image, "true")
        settled(lambda: self.leases(NETKIT))
        if self.agent:
            after = agent_counters(self.agent)
            self.probe_agent = (after[0] - before[0], after[1] - before[1])
        callers = (("container cleanup", "podman container cleanup (conmon)"), (" run ", "podman run"),
                   ("netkit-bridge", "netkit-bridge (IPAM delegation)"),
                   ("netkit agent", "the agent (netkit-bridge's IPAM delegation)"))
        with open(log) as f:
            for line in f:
                plugin, command, sock, parent = line.rstrip("\n").split("\t", 3)
                caller = next((c for key, c in callers if key in f" {parent} "), parent[:60])
                self.probe.append({"plugin": plugin, "command": command, "socket": sock, "caller": caller})
        if not any(p["command"] == "ADD" for p in self.probe) or not any(p["command"] == "DEL" for p in self.probe):
            raise BenchError(f"env check: the wrappers did not see both ADD and DEL: {self.probe}")

    # ---- the measurements ------------------------------------------------------------------------------
    def one(self, impl: str, row: str, into: dict[str, dict[str, list[float]]]) -> None:
        pm = self.pm[impl]
        net = ["--network", "none"] if impl == FLOOR else ["--network", self.network[impl]]
        pub = ["-p", f"{self.next_port()}:{CONTAINER_PORT}"] if row == "port" else []
        args = ("run", "--rm", *net, *pub, pm.store.image, "true")
        before = agent_counters(self.agent) if self.agent else None
        ms = timed(pm, *args)
        if before is not None and self.agent is not None:
            after = agent_counters(self.agent)
            use = self.agent_use.setdefault(impl, {"runs": 0, "runs_with_agent_reads": 0, "cpu_ticks": 0})
            use["runs"] += 1
            use["runs_with_agent_reads"] += after[0] > before[0]
            use["cpu_ticks"] += after[1] - before[1]
        if impl in VARIANTS and self.leases(impl):       # untimed: was the DEL done when podman returned?
            self.lease_left[impl] += 1
            if not settled(lambda: self.leases(impl), 0.05):
                raise BenchError(f"{impl}: lease {self.leases(impl)} still there 10 s after {pm.show(*args)}")
        into.setdefault(row, {NETKIT: [], REFERENCE: [], FLOOR: []})[impl].append(ms)
        self.commands.setdefault(f"{impl} {row}", pm.show(*args))

    def one_round(self, i: int, into: dict[str, dict[str, list[float]]]) -> None:
        impls = [NETKIT, REFERENCE, FLOOR]
        for row in ROWS:
            for impl in impls[i % 3:] + impls[:i % 3]:      # rotate who goes first, round to round
                if not (impl == FLOOR and row == "port"):
                    self.one(impl, row, into)

    def measure(self) -> None:
        print(f"{self.args.warmup} warm-up + {self.args.runs} measured rounds", flush=True)
        for i in range(self.args.warmup):
            self.one_round(i, self.warmup_samples)
        self.agent_use.clear()                               # count the measured rounds only
        self.lease_left = {NETKIT: 0, REFERENCE: 0}
        bench.rounds(self.args.runs, lambda i: self.one_round(i, self.samples))

    def sanity(self) -> list[str]:
        """After all runs: no container, lease, veth, per-attachment chain or DNAT of a used port left."""
        problems = []
        left = self.pm[FLOOR]("ps", "-aq", check=False).stdout.split()     # one storage: every container
        if left:
            problems.append(f"podman containers left: {left}")
        for variant in VARIANTS:
            if self.leases(variant):
                problems.append(f"{variant}: leases left: {self.leases(variant)}")
            bridge = self.conflists[variant]["plugins"][0]["bridge"]
            links = sorted(self.hosts[variant].links())
            if links != sorted(["lo", bridge]):
                problems.append(f"{variant} sandbox {self.sandbox[variant]}: links {links}, expected lo and {bridge}")
            text = nat_text(self.hosts[variant])
            chains = attachment_chains(text)
            if chains:
                problems.append(f"{variant}: per-attachment chains left: {chains[:6]}")
            dnat = sorted(set(self.ports) & dnat_ports(text))
            if dnat:
                problems.append(f"{variant}: DNAT left for host ports {dnat[:6]}")
        if self.hosts[FLOOR].links() != ["lo"]:
            problems.append(f"floor sandbox: links {self.hosts[FLOOR].links()}")
        return problems

    def teardown(self) -> None:
        """Each variant's containers with the configuration of its network, inside its sandbox (the CNI
        DEL needs it), then the agent (before the store: its command line names the temp dir), with any
        a late DEL started after it (auto-start), then the store."""
        store = self.store
        if store is not None and store.paths_before is not None:
            for conf in (*VARIANTS, FLOOR) if os.path.isdir(os.path.join(self.tmp, "graph")) else ():
                if conf in self.pm:
                    ids = self.pm[conf].remove_all(*([f"network={self.network[conf]}"] if conf in VARIANTS else []))
                    if ids:
                        self.cleanup_notes.append(f"{conf}: podman containers left at cleanup: {[i[:12] for i in ids]}")
        if self.agent is not None:
            if store is not None and store.paths_before is not None:
                # podman's late `container cleanup` (its DEL) first, while the agent still serves it.
                agents = set(agent_processes())
                self.cleanup_problems += procs.reap(
                    lambda: {pid: cmd for pid, cmd in store.processes().items()
                             if pid not in agents and "netkit.cli.runtime_server" not in cmd}, 60)
            self.cleanup_problems += [p for p in [self.agent.stop()] if p]
            try:
                stop_started(self.agent.path)
            except AgentError as exc:
                self.cleanup_problems.append(str(exc))
        if store is not None and store.paths_before is not None:
            store.teardown(wait_s=10)
            self.cleanup_problems += store.problems
            self.cleanup_notes += store.notes
        super().teardown()

    # ---- output ------------------------------------------------------------------------------------------
    def table(self) -> str:
        floor = summary(self.samples["plain"][FLOOR])["median"]
        head = (f"{'ms':<52} {'netkit med':>10} {'p95':>7} {'ref med':>8} {'p95':>7} {'ratio':>6}"
                f" {'nk-floor':>9} {'ref-floor':>9} {'ratio':>6}")
        lines = [bench.ruled(head)]
        for row, label in ROWS.items():
            nk, ref = summary(self.samples[row][NETKIT]), summary(self.samples[row][REFERENCE])
            dn, dr = nk["median"] - floor, ref["median"] - floor
            lines.append(f"{label:<52} {nk['median']:>10.1f} {nk['p95']:>7.1f} {ref['median']:>8.1f} "
                         f"{ref['p95']:>7.1f} {nk['median'] / ref['median']:>6.2f} {dn:>9.1f} {dr:>9.1f} "
                         f"{(dn / dr if dr > 0 else float('nan')):>6.2f}")
        return "\n".join(lines)

    def report(self) -> dict[str, Any]:
        args = self.args
        mode = "in-process (NETKIT_AGENT_SOCKET points where nothing listens)"
        if args.agent:
            mode = ("via `netkit agent` (socket in podman's environment" +
                    (" and in conmon_env_vars)" if self.conmon_env else " only, not in conmon_env_vars)"))
        floor = summary(self.samples["plain"][FLOOR])
        load_after = loadavg()
        print(f"\n{args.runs} interleaved rounds (+{args.warmup} warm-up), ms; kernel {platform.release()}, "
              f"{os.cpu_count()} CPUs; netkit {NETKIT_VERSION}, podman {self.versions.get('podman')} "
              f"({self.versions.get('runc')}, CNI backend, overlay storage)")
        print(f"netkit plugins: {mode}")
        print(f"load average (1, 5, 15 min) at start {self.load_before}, at end {load_after}")
        print(f"floor `run --rm --network none IMAGE true`: median {floor['median']:.1f}, p95 {floor['p95']:.1f}")
        print(f"\n{self.table()}\n")
        print("median and p95 of the wall time of the podman command (under nsenter); ratio = netkit / reference;")
        print("x-floor = median minus the floor's median (what the network costs podman run, setup and teardown).")
        left = ", ".join(f"{v} {self.lease_left[v]}/{2 * args.runs}" for v in VARIANTS)
        print(f"runs whose lease was still there when podman returned (DEL not inside the time): {left}")
        print("\nenv check (one untimed run of the -p command on netkit's network, wrappers logging each plugin exec):")
        for p in self.probe:
            print(f"  {p['plugin']:<15} {p['command']:<8} exec'd by {p['caller']:<44} "
                  f"{agent_protocol.ENV_SOCKET}={p['socket']}")
        if self.agent is not None:
            reads, ticks = self.probe_agent
            print(f"  agent during that run: {reads} read syscalls, {ticks * 1000 // CLK_TCK} ms CPU")
            print("agent activity per measured podman command (read syscalls and CPU time of the agent process, "
                  "exited request threads included):")
            for impl in (NETKIT, REFERENCE, FLOOR):
                use = self.agent_use.get(impl, {"runs": 0, "runs_with_agent_reads": 0, "cpu_ticks": 0})
                print(f"  {impl:<10} agent read in {use['runs_with_agent_reads']}/{use['runs']} runs, "
                      f"{use['cpu_ticks'] * 1000 // CLK_TCK} ms CPU in total")
            if self.agent.rusage is not None:
                ru = self.agent.rusage
                print(f"  agent total CPU over its life (wait4): {(ru.ru_utime + ru.ru_stime) * 1000:.0f} ms")
        if self.machine_agent:
            print(f"note: {agent_protocol.DEFAULT_SOCKET} exists on this machine; a plugin that does not get "
                  f"{agent_protocol.ENV_SOCKET} would use it")
        print("\nchecks before the rounds:")
        for line in self.checks:
            print(f"  {line}")
        bench.print_commands("commands (first round; HOSTPORT changes every run)", self.commands)
        removed = self.store.removed if self.store else []
        if removed:
            print(f"removed what podman made outside the temp dir: {', '.join(removed)}")
        return {
            "runs": args.runs, "warmup_rounds": args.warmup, "agent": args.agent,
            "conmon_env": self.conmon_env if args.agent else None, "netkit_mode": mode,
            "machine": {**bench.machine(), "loadavg_start": self.load_before, "loadavg_end": load_after},
            "versions": {"netkit": NETKIT_VERSION, **self.versions}, "unit": "ms", "conflists": self.conflists,
            "rows": {row: {"label": ROWS[row], **{impl: {"summary": summary(v), "samples": v}
                                                  for impl, v in self.samples[row].items() if v}} for row in ROWS},
            "warmup_samples": self.warmup_samples, "lease_left_at_return": self.lease_left,
            "env_check": self.probe, "agent_use": self.agent_use, "checks": self.checks,
            "commands": self.commands, "removed_podman_paths": removed,
        }


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def check(args: Any) -> str:
    """A usage error, or ""."""
    if args.runs < 1 or args.warmup < 1:
        return "--runs and --warmup must be at least 1 (the first runs also create the bridges)"
    if args.no_conmon_env and not args.agent:
        return "--no-conmon-env only makes sense with --agent"
    missing = hp.missing_packages()
    return (f"missing {', '.join(missing)}: apt-get install --no-install-recommends podman runc busybox-static "
            f"containernetworking-plugins util-linux") if missing else ""


ap = parser(__doc__)
ap.add_argument("--runs", type=int, default=20, help="measured rounds (default 20)")
ap.add_argument("--warmup", type=int, default=2, help="uncounted rounds first (default 2)")
ap.add_argument("--agent", action="store_true",
                help="run `netkit agent --socket <tmp>/agent.sock` and give netkit's plugins that socket")
ap.add_argument("--no-conmon-env", action="store_true",
                help="with --agent: set the socket in podman's environment only, not in conmon_env_vars "
                     "(then the DEL, which conmon's `podman container cleanup` runs, does not get it)")

if __name__ == "__main__":
    sys.exit(main(ap, PodmanRun, plugins=("bridge", "host-local", "portmap", "firewall", "tuning"), check=check))
