#!/usr/bin/env python3
"""Latency of netkit's CNI plugins against Debian's reference (Go) plugins, measured side by side.

Run as root from the repository root::

    .venv/bin/python bench/cni_latency.py [--runs 30] [--json out.json]

Everything happens inside throwaway sandbox "host" network namespaces made for this run; each plugin
is exec'd as ``ip netns exec HOST PLUGIN`` and containers are namespaces of their own.  The
bridge+ipam+portmap chains run in two further sandbox hosts, one per implementation, because the
reference portmap writes iptables(-nft) rules and netkit its own nft table: never both in one
namespace.  netkit's ADD/DEL rows are measured twice: in-process (``NETKIT_AGENT_SOCKET=/nonexistent``)
and through a warm agent (``netkit agent``) the script starts on a socket in its temp dir, with a
sandbox host of its own for the agent's portmap chain.  No traffic is sent.  Every namespace the
script made is deleted and the agent is stopped in a ``finally`` (Ctrl-C and SIGTERM included), and
the script checks afterwards that none is left.  See bench/README.md.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchlib import AgentOfTheRun, BenchError, ip, netns_names, root_links, pct, summary  # noqa: E402 - bench/ is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from netkit.launch import install as nk_install  # noqa: E402

REFERENCE_BIN = "/usr/lib/cni"
NETKIT, AGENT, REFERENCE = "netkit", "netkit-agent", "reference"
IMPLS = (NETKIT, REFERENCE)                 # the VERSION rows: netkit in-process against the reference
ATTACH_IMPLS = (NETKIT, AGENT, REFERENCE)   # the ADD/DEL rows: netkit in-process, through the agent, reference
VARIANT_LABEL = {NETKIT: "in-process", AGENT: "agent"}
NO_AGENT = "/nonexistent"                   # NETKIT_AGENT_SOCKET for in-process: no agent listens there
# VERSION rows: (row label, netkit executable, reference executable)
VERSION_PAIRS = [
    ("VERSION bridge", "netkit-bridge", "bridge"),
    ("VERSION ipam", "netkit-ipam", "host-local"),
    ("VERSION loopback", "netkit-loopback", "loopback"),
]
ADD_ROW, DEL_ROW = "ADD bridge+ipam", "DEL bridge+ipam"
CHAIN_ADD_ROW, CHAIN_DEL_ROW = "ADD bridge+ipam+portmap", "DEL bridge+ipam+portmap"
# Plugin execs summed into one sample of each row (the minus-baseline table subtracts that many baselines).
EXECS_PER_SAMPLE = {CHAIN_ADD_ROW: 2, CHAIN_DEL_ROW: 2}
BASELINE_ROW = "baseline: ip netns exec /bin/true"
SUBNET = "10.99.0.0/16"
CHAIN_SUBNET = "10.98.0.0/16"
CHAIN_PLUGINS = {NETKIT: ("netkit-bridge", "netkit-portmap"), AGENT: ("netkit-bridge", "netkit-portmap"),
                 REFERENCE: ("bridge", "portmap")}
CHAIN_HOSTPORT_BASE = 20000         # round k (warm-up rounds included) publishes hostPort BASE + k
CHAIN_CONTAINER_PORT = 80
NETKIT_FIREWALL = "nftables"        # NETKIT_FIREWALL_BACKEND for the netkit chains: its own nft table
EXEC_TIMEOUT_S = 60



class Bench(AgentOfTheRun):
    def __init__(self, runs: int, warmup: int) -> None:
        self.runs = runs
        self.warmup = warmup
        while True:                                        # prefix of every namespace we make
            self.tag = f"nkb{secrets.token_hex(3)}"
            if not any(n.startswith(self.tag) for n in netns_names()):
                break
        self.host = f"{self.tag}-h"
        self.bridges = {NETKIT: f"{self.tag}nk", AGENT: f"{self.tag}ag", REFERENCE: f"{self.tag}ref"}  # <= 15
        # The portmap chains: one sandbox host (and bridge) per implementation, the agent's included
        # (its nft table is netkit's, but its own: the two netkit variants never share state).
        self.chain_hosts = {NETKIT: f"{self.tag}-pn", AGENT: f"{self.tag}-pa", REFERENCE: f"{self.tag}-pr"}
        self.chain_bridges = {NETKIT: f"{self.tag}pnk", AGENT: f"{self.tag}pag", REFERENCE: f"{self.tag}pref"}
        self.hosts = [self.host, *self.chain_hosts.values()]
        self.chain_round = 0                               # hostPort = CHAIN_HOSTPORT_BASE + this
        self.tmp = ""
        self.bin_dir = ""
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_sock = ""
        self.agent_log = ""
        self.agent_cpu_s = 0.0                             # the agent's utime+stime over the measured rounds
        self.made_netns: list[str] = []                    # every netns we created, in order
        self.live_netns: set[str] = set()                  # created and not yet deleted
        self.counter = 0
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.baseline: list[float] = []
        self.warmup_samples: dict[str, dict[str, list[float]]] = {}
        self.cleanup_problems: list[str] = []

    # ---- namespaces -------------------------------------------------------------------------
    def netns_add(self, name: str) -> None:
        proc = ip("netns", "add", name)
        if proc.returncode != 0:
            raise BenchError(f"ip netns add {name} failed: {proc.stderr.strip()}")
        self.made_netns.append(name)
        self.live_netns.add(name)

    def netns_del(self, name: str) -> None:
        proc = ip("netns", "del", name)
        if proc.returncode != 0:
            self.cleanup_problems.append(f"ip netns del {name} failed: {proc.stderr.strip()}")
        else:
            self.live_netns.discard(name)

    def new_container(self) -> str:
        self.counter += 1
        name = f"{self.tag}-c{self.counter}"
        self.netns_add(name)
        return name

    # ---- setup / teardown ---------------------------------------------------------------------
    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="netkit-bench-")
        self.bin_dir = os.path.join(self.tmp, "bin")
        report = nk_install.install(bin_dir=self.bin_dir, conf_dir=os.path.join(self.tmp, "net.d"))
        self.install_report = report
        for impl in ATTACH_IMPLS:
            os.makedirs(os.path.join(self.tmp, "data", impl))
            os.makedirs(os.path.join(self.tmp, "chaindata", impl))
        self.start_agent()
        for host in self.hosts:
            self.netns_add(host)
            proc = ip("netns", "exec", host, "ip", "link", "set", "lo", "up")
            if proc.returncode != 0:
                raise BenchError(f"bringing lo up in {host} failed: {proc.stderr.strip()}")

    def teardown(self) -> None:
        self.stop_agent()
        # Containers first (their veths are already gone after DEL), then the hosts, which take the
        # bridges, firewall rules and any leftover veth ends with them.
        for name in [n for n in self.made_netns if n in self.live_netns and n not in self.hosts]:
            self.netns_del(name)
        for host in self.hosts:
            if host in self.live_netns:
                self.netns_del(host)
        # Anything else carrying our random tag is ours too (e.g. made just as Ctrl-C arrived).
        for name in sorted(n for n in netns_names() if n.startswith(self.tag + "-")):
            self.netns_del(name)
        left = sorted(n for n in netns_names() if n.startswith(self.tag))
        if left:
            self.cleanup_problems.append(f"namespaces still present after cleanup: {', '.join(left)}")
        if self.agent is not None and os.path.exists(f"/proc/{self.agent.pid}"):
            self.cleanup_problems.append(f"the agent (pid {self.agent.pid}) is still running")
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- plugin calls -------------------------------------------------------------------------
    def exe(self, name: str) -> str:
        return os.path.join(self.bin_dir if name.startswith("netkit-") else REFERENCE_BIN, name)

    def env(self, command: str, netns: str | None = None, container_id: str | None = None,
            firewall: str = "", impl: str = NETKIT) -> dict[str, str]:
        env = {"CNI_COMMAND": command, "CNI_PATH": f"{self.bin_dir}:{REFERENCE_BIN}",
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        if impl != REFERENCE:   # never a machine-wide agent: ours, or none
            env["NETKIT_AGENT_SOCKET"] = self.agent_sock if impl == AGENT else NO_AGENT
        if firewall:
            env["NETKIT_FIREWALL_BACKEND"] = firewall
        if netns is not None:
            env["CNI_NETNS"] = f"/run/netns/{netns}"
            env["CNI_IFNAME"] = "eth0"
            env["CNI_CONTAINERID"] = container_id or netns
        return env

    def timed(self, argv: list[str], env: dict[str, str], stdin: bytes,
              host: str | None = None) -> tuple[float, int, bytes, bytes]:
        """Wall time in ms from spawning ``ip netns exec HOST argv`` to its exit, plus its outputs."""
        full = ["ip", "netns", "exec", host or self.host, *argv]
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
        try:
            out, err = proc.communicate(stdin, timeout=EXEC_TIMEOUT_S)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        t1 = time.perf_counter_ns()
        return (t1 - t0) / 1e6, proc.returncode, out, err

    def conf(self, impl: str) -> dict[str, Any]:
        """Same shape for both implementations; only bridge name, plugin types and data dir differ."""
        nk = impl != REFERENCE
        return {
            "cniVersion": "1.0.0",
            "name": f"bench-{impl}",
            "type": "netkit-bridge" if nk else "bridge",
            "bridge": self.bridges[impl],
            "isGateway": True,
            "ipam": {
                "type": "netkit-ipam" if nk else "host-local",
                "ranges": [[{"subnet": SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": os.path.join(self.tmp, "data", impl),
            },
        }

    def version(self, exe_name: str) -> float:
        ms, code, out, err = self.timed([self.exe(exe_name)], self.env("VERSION"), b'{"cniVersion":"1.0.0"}')
        try:
            reply = json.loads(out)
            ok = code == 0 and "1.0.0" in reply.get("supportedVersions", [])
        except ValueError:
            ok = False
        if not ok:
            raise BenchError(f"VERSION of {exe_name} failed (exit {code}): {out[:300]!r} {err[:300]!r}")
        return ms

    def add(self, impl: str, container: str) -> tuple[float, dict[str, Any]]:
        conf = self.conf(impl)
        ms, code, out, err = self.timed([self.exe(conf["type"])], self.env("ADD", container, impl=impl),
                                        json.dumps(conf).encode())
        try:
            result = json.loads(out)
        except ValueError:
            result = {}
        addrs = [i.get("address", "") for i in result.get("ips", [])] if isinstance(result, dict) else []
        if code != 0 or not any(a.startswith("10.99.") for a in addrs):
            raise BenchError(f"ADD via {conf['type']} in {container} failed (exit {code}): "
                             f"stdout {out[:500]!r} stderr {err[:500]!r}")
        return ms, result

    def delete(self, impl: str, container: str, prev: dict[str, Any]) -> float:
        conf = self.conf(impl)
        conf["prevResult"] = prev          # as libcni sends it on DEL
        ms, code, out, err = self.timed([self.exe(conf["type"])], self.env("DEL", container, impl=impl),
                                        json.dumps(conf).encode())
        if code != 0:
            raise BenchError(f"DEL via {conf['type']} in {container} failed (exit {code}): "
                             f"stdout {out[:500]!r} stderr {err[:500]!r}")
        return ms

    # ---- the bridge+ipam+portmap chain (own sandbox host per implementation) ------------------
    def chain_bridge_conf(self, impl: str) -> dict[str, Any]:
        """Same shape as conf(), in the chain's host, subnet and data dir."""
        conf = self.conf(impl)
        conf["name"] = f"benchpm-{impl}"
        conf["bridge"] = self.chain_bridges[impl]
        conf["ipam"]["ranges"] = [[{"subnet": CHAIN_SUBNET}]]
        conf["ipam"]["dataDir"] = os.path.join(self.tmp, "chaindata", impl)
        return conf

    @staticmethod
    def mappings(host_port: int) -> list[dict[str, Any]]:
        # "protocol" spelled out: the reference portmap requires it (netkit defaults to tcp).
        return [{"hostPort": host_port, "containerPort": CHAIN_CONTAINER_PORT, "protocol": "tcp"}]

    def portmap_conf(self, impl: str, host_port: int, prev: dict[str, Any]) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": f"benchpm-{impl}", "type": CHAIN_PLUGINS[impl][1],
                "capabilities": {"portMappings": True},
                "runtimeConfig": {"portMappings": self.mappings(host_port)}, "prevResult": prev}

    def chain_exec(self, impl: str, command: str, conf: dict[str, Any],
                   container: str) -> tuple[float, int, bytes, bytes]:
        firewall = NETKIT_FIREWALL if impl != REFERENCE else ""
        return self.timed([self.exe(conf["type"])], self.env(command, container, firewall=firewall, impl=impl),
                          json.dumps(conf).encode(), host=self.chain_hosts[impl])

    def dnat_rules_text(self, impl: str) -> str:
        """The sandbox host's NAT rules, as the implementation's own tool lists them (read only)."""
        host = self.chain_hosts[impl]
        if impl != REFERENCE:
            proc = ip("netns", "exec", host, "nft", "list", "table", "inet", "netkit")
        else:
            proc = ip("netns", "exec", host, "iptables-save", "-t", "nat")
        if proc.returncode != 0:
            raise BenchError(f"listing the NAT rules of {host} failed: {proc.stderr.strip()}")
        return proc.stdout

    @staticmethod
    def has_dnat(impl: str, rules: str, host_port: int) -> bool:
        needle = f"dport {host_port} " if impl != REFERENCE else f"--dport {host_port} "
        return any(needle in line + " " for line in rules.splitlines())

    def chain_add(self, impl: str, container: str, host_port: int) -> tuple[float, dict[str, Any]]:
        """bridge ADD, then portmap ADD with prevResult = the bridge's result; the sum of both execs."""
        bridge_conf = self.chain_bridge_conf(impl)
        ms1, code, out, err = self.chain_exec(impl, "ADD", bridge_conf, container)
        try:
            prev = json.loads(out)
        except ValueError:
            prev = {}
        addrs = [i.get("address", "") for i in prev.get("ips", [])] if isinstance(prev, dict) else []
        if code != 0 or not any(a.startswith("10.98.") for a in addrs):
            raise BenchError(f"chain ADD via {bridge_conf['type']} in {container} failed (exit {code}): "
                             f"stdout {out[:500]!r} stderr {err[:500]!r}")
        pm_conf = self.portmap_conf(impl, host_port, prev)
        ms2, code, out, err = self.chain_exec(impl, "ADD", pm_conf, container)
        try:
            result = json.loads(out)
        except ValueError:
            result = {}
        if code != 0 or not isinstance(result, dict) or result.get("ips") != prev["ips"]:
            raise BenchError(f"chain ADD via {pm_conf['type']} in {container} failed (exit {code}): "
                             f"stdout {out[:500]!r} stderr {err[:500]!r}")
        if not self.has_dnat(impl, self.dnat_rules_text(impl), host_port):      # not timed
            raise BenchError(f"{pm_conf['type']} ADD exited 0 but no DNAT rule for hostPort {host_port} "
                             f"in {self.chain_hosts[impl]}")
        return ms1 + ms2, result

    def chain_delete(self, impl: str, container: str, host_port: int, prev: dict[str, Any]) -> float:
        """portmap DEL, then bridge DEL, both with the chain's result as prevResult (as libcni does)."""
        pm_conf = self.portmap_conf(impl, host_port, prev)
        ms1, code, out, err = self.chain_exec(impl, "DEL", pm_conf, container)
        if code != 0:
            raise BenchError(f"chain DEL via {pm_conf['type']} in {container} failed (exit {code}): "
                             f"stdout {out[:500]!r} stderr {err[:500]!r}")
        bridge_conf = self.chain_bridge_conf(impl)
        bridge_conf["prevResult"] = prev
        ms2, code, out, err = self.chain_exec(impl, "DEL", bridge_conf, container)
        if code != 0:
            raise BenchError(f"chain DEL via {bridge_conf['type']} in {container} failed (exit {code}): "
                             f"stdout {out[:500]!r} stderr {err[:500]!r}")
        if self.has_dnat(impl, self.dnat_rules_text(impl), host_port):          # not timed
            raise BenchError(f"{pm_conf['type']} DEL exited 0 but the DNAT rule for hostPort {host_port} "
                             f"is still in {self.chain_hosts[impl]}")
        return ms1 + ms2

    # ---- the measurement ----------------------------------------------------------------------
    def one_round(self, i: int, into: dict[str, dict[str, list[float]]], baseline: list[float]) -> None:
        # Alternate which implementation goes first, so neither always meets a warmer cache; the
        # three of the ADD/DEL rows take turns (rotation), each first once every three rounds.
        order = IMPLS if i % 2 == 0 else IMPLS[::-1]
        k = i % len(ATTACH_IMPLS)
        attach_order = ATTACH_IMPLS[k:] + ATTACH_IMPLS[:k]
        self.check_agent()

        def put(row: str, impl: str, ms: float) -> None:
            into.setdefault(row, {})
            into[row].setdefault(impl, []).append(ms)

        ms, code, _, err = self.timed(["/bin/true"], {"PATH": os.environ.get("PATH", "")}, b"")
        if code != 0:
            raise BenchError(f"ip netns exec {self.host} /bin/true failed: {err!r}")
        baseline.append(ms)
        for row, nk_exe, ref_exe in VERSION_PAIRS:
            for impl in order:
                put(row, impl, self.version(nk_exe if impl == NETKIT else ref_exe))
        containers = {impl: self.new_container() for impl in attach_order}
        results = {}
        for impl in attach_order:
            ms, results[impl] = self.add(impl, containers[impl])
            put(ADD_ROW, impl, ms)
        for impl in attach_order:
            put(DEL_ROW, impl, self.delete(impl, containers[impl], results[impl]))
        for impl in attach_order:
            self.netns_del(containers[impl])
            if containers[impl] in self.live_netns:
                raise BenchError(f"could not delete container namespace {containers[impl]}: "
                                 f"{self.cleanup_problems[-1]}")
        # The portmap chain, each implementation in its own sandbox host; a new hostPort every round.
        host_port = CHAIN_HOSTPORT_BASE + self.chain_round
        self.chain_round += 1
        containers = {impl: self.new_container() for impl in attach_order}
        results = {}
        for impl in attach_order:
            ms, results[impl] = self.chain_add(impl, containers[impl], host_port)
            put(CHAIN_ADD_ROW, impl, ms)
        for impl in attach_order:
            put(CHAIN_DEL_ROW, impl, self.chain_delete(impl, containers[impl], host_port, results[impl]))
        for impl in attach_order:
            self.netns_del(containers[impl])
            if containers[impl] in self.live_netns:
                raise BenchError(f"could not delete container namespace {containers[impl]}: "
                                 f"{self.cleanup_problems[-1]}")
        self.check_agent()

    def run(self) -> None:
        warm_base: list[float] = []
        for i in range(self.warmup):       # first ADD creates the bridge; page cache; not counted
            self.one_round(i, self.warmup_samples, warm_base)
        cpu0 = self.agent_cpu()
        try:
            for i in range(self.runs):
                self.one_round(i, self.samples, self.baseline)
                print(f"\r  round {i + 1}/{self.runs}", end="", file=sys.stderr, flush=True)
        finally:
            print(file=sys.stderr)
        self.agent_cpu_s = self.agent_cpu() - cpu0

    def sanity(self) -> list[str]:
        """After all DELs: no leases, no veth and no port-mapping rule left in any sandbox host, and
        each chain host holds only its own implementation's firewall tables."""
        problems = []
        if self.agent_cpu_s <= 0:
            problems.append("the agent used no CPU time during the measured rounds: did the launchers "
                            "fall back in-process?")
        for impl in ATTACH_IMPLS:
            for d in (os.path.join(self.tmp, "data", impl, f"bench-{impl}"),
                      os.path.join(self.tmp, "chaindata", impl, f"benchpm-{impl}")):
                leases = sorted(n for n in os.listdir(d) if n[0].isdigit()) if os.path.isdir(d) else []
                if leases:
                    problems.append(f"{impl}: leases left after DEL in {d}: {leases[:5]}")
        for host, bridges in [(self.host, list(self.bridges.values()))] + \
                [(self.chain_hosts[impl], [self.chain_bridges[impl]]) for impl in ATTACH_IMPLS]:
            out = ip("netns", "exec", host, "ip", "-j", "link", "show").stdout
            links = sorted(link["ifname"] for link in json.loads(out or "[]"))
            expected = sorted(["lo", *bridges])
            if links != expected:
                problems.append(f"sandbox host {host}: links {links}, expected {expected}")
        for impl in ATTACH_IMPLS:
            host = self.chain_hosts[impl]
            tables = sorted(line.strip() for line in
                            ip("netns", "exec", host, "nft", "list", "tables").stdout.splitlines() if line.strip())
            nat = ip("netns", "exec", host, "iptables-save", "-t", "nat").stdout
            if impl != REFERENCE:
                chains = json.loads(ip("netns", "exec", host, "nft", "-j", "list", "table", "inet", "netkit").stdout
                                    or '{"nftables": []}')["nftables"]
                left = sorted(o["chain"]["name"] for o in chains
                              if "chain" in o and o["chain"]["name"].startswith(("NK-D-", "NK-M-")))
                foreign = [t for t in tables if not t.endswith(" netkit")]
            else:
                left = sorted(line[1:].split()[0] for line in nat.splitlines() if line.startswith(":CNI-DN-"))
                foreign = [t for t in tables if t.endswith(" netkit")]
            if left:
                problems.append(f"{impl}: per-attachment chains left after DEL in {host}: {left[:5]}")
            if foreign:
                problems.append(f"{impl}: the other implementation's tables in {host}: {foreign}")
            rules = self.dnat_rules_text(impl)
            ports = [p for p in range(CHAIN_HOSTPORT_BASE, CHAIN_HOSTPORT_BASE + self.chain_round)
                     if self.has_dnat(impl, rules, p)]
            if ports:
                problems.append(f"{impl}: DNAT rules left in {host} for hostPorts {ports[:5]}")
        return problems


# ---- statistics and output ------------------------------------------------------------------------
def table(rows: list[tuple[str, dict[str, float], dict[str, float]]], title: str) -> str:
    head = f"{'operation':<38} {'netkit med':>10} {'p95':>8} {'ref med':>9} {'p95':>8} {'ratio':>7}"
    lines = [title, head, "-" * len(head)]
    for label, nk, ref in rows:
        ratio = f"{nk['median'] / ref['median']:.2f}" if ref["median"] > 0 else "n/a"
        lines.append(f"{label:<38} {nk['median']:>10.1f} {nk['p95']:>8.1f} {ref['median']:>9.1f} "
                     f"{ref['p95']:>8.1f} {ratio:>7}")
    return "\n".join(lines)


def table_rows() -> list[tuple[str, str, str]]:
    """(label, row, netkit variant) in print order: VERSION in-process only, ADD/DEL both variants."""
    out = [(r, r, NETKIT) for r, _, _ in VERSION_PAIRS]
    for r in (ADD_ROW, DEL_ROW, CHAIN_ADD_ROW, CHAIN_DEL_ROW):
        out += [(f"{r} [{VARIANT_LABEL[v]}]", r, v) for v in (NETKIT, AGENT)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="measured rounds (default 30)")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted rounds first (default 2)")
    ap.add_argument("--json", metavar="FILE", help="also write all samples and statistics here")
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 1:
        ap.error("--runs and --warmup must be at least 1 (the first ADD also creates the bridge)")
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces)")
    for name in ("bridge", "host-local", "loopback", "portmap"):
        if not os.access(os.path.join(REFERENCE_BIN, name), os.X_OK):
            ap.error(f"reference plugin {REFERENCE_BIN}/{name} missing (apt-get install containernetworking-plugins)")
    for tool in ("nft", "iptables-save"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found (apt-get install nftables iptables)")

    cmdline = shlex.join(sys.orig_argv)
    if not sys.executable:
        ap.error("no sys.executable to start the agent with")
    print(f"command: {cmdline}")
    root_bridges_before = {n for n, kind in root_links().items() if kind == "bridge"}
    bench = Bench(args.runs, args.warmup)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    error: str | None = None
    try:
        bench.setup()
        print(f"sandbox host netns {bench.host}; bridges {bench.bridges[NETKIT]} (netkit in-process), "
              f"{bench.bridges[AGENT]} (netkit agent), {bench.bridges[REFERENCE]} (reference); "
              f"{args.warmup} warm-up + {args.runs} measured rounds", flush=True)
        print(f"portmap chains: netkit in-process in {bench.chain_hosts[NETKIT]} (bridge "
              f"{bench.chain_bridges[NETKIT]}), netkit agent in {bench.chain_hosts[AGENT]} (bridge "
              f"{bench.chain_bridges[AGENT]}), both NETKIT_FIREWALL_BACKEND={NETKIT_FIREWALL}; reference in "
              f"{bench.chain_hosts[REFERENCE]} (bridge {bench.chain_bridges[REFERENCE]}, iptables)", flush=True)
        print(f"agent: pid {bench.agent.pid if bench.agent else '?'}, socket {bench.agent_sock}; in-process "
              f"rows run with NETKIT_AGENT_SOCKET={NO_AGENT}", flush=True)
        bench.run()
        sanity = bench.sanity()
    except KeyboardInterrupt:
        error = "interrupted"
        sanity = []
    except BenchError as exc:
        error = str(exc)
        sanity = []
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)   # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            bench.teardown()
        finally:
            signal.signal(signal.SIGINT, old)

    new_root_bridges = sorted({n for n, kind in root_links().items() if kind == "bridge"} - root_bridges_before)
    if new_root_bridges:
        bench.cleanup_problems.append(f"new bridges in the root namespace: {new_root_bridges}")
    ours_in_root = sorted(n for n in root_links() if n.startswith(bench.tag))
    if ours_in_root:
        bench.cleanup_problems.append(f"links named {bench.tag}* in the root namespace: {ours_in_root}")

    for problem in bench.cleanup_problems:
        print(f"CLEANUP PROBLEM: {problem}", file=sys.stderr)
    for problem in sanity:
        print(f"SANITY PROBLEM: {problem}", file=sys.stderr)
    if error is not None:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1

    base = summary(bench.baseline)
    base_med = base["median"]
    rows = table_rows()
    net = {r: {impl: [x - EXECS_PER_SAMPLE.get(r, 1) * base_med for x in xs] for impl, xs in bench.samples[r].items()}
           for r in bench.samples}
    raw_rows = [(label, summary(bench.samples[r][v]), summary(bench.samples[r][REFERENCE])) for label, r, v in rows]
    net_rows = [(label, summary(net[r][v]), summary(net[r][REFERENCE])) for label, r, v in rows]

    print()
    print(f"{args.runs} interleaved runs per cell, ms; kernel {platform.release()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"{BASELINE_ROW}: median {base_med:.1f}, p95 {base['p95']:.1f}")
    print()
    print(table(raw_rows, "wall time of `ip netns exec HOST <plugin>` (spawn to exit)"))
    print()
    print(table(net_rows, f"same, minus the baseline median ({base_med:.1f} ms) per exec: the plugins' own time"))
    print()
    print("ratio = netkit median / reference median (the same reference samples for both netkit variants).")
    print("[in-process]: NETKIT_AGENT_SOCKET=/nonexistent; [agent]: the launchers forward to `netkit agent`")
    print(f"(started by this run; {bench.agent_cpu_s:.2f} s of its CPU time over the measured rounds).")
    print("ADD/DEL = bridge plugin exec incl. its IPAM delegate exec.")
    print("ADD/DEL bridge+ipam+portmap = sum of 2 execs (ADD: bridge, then portmap with prevResult; DEL: portmap,")
    print("then bridge), one tcp mapping, each implementation in its own sandbox host; minus 2 baselines.")

    if args.json:
        doc = {
            "command": cmdline,
            "runs": args.runs,
            "warmup_rounds": args.warmup,
            "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                        "python": platform.python_version()},
            "unit": "ms",
            "method": "wall time from spawning `ip netns exec HOST plugin` to its exit; netkit and "
                      "reference interleaved in every round, order alternating per round (VERSION) or "
                      "rotating among netkit in-process, netkit agent and reference (ADD/DEL)",
            "agent": {"command": [sys.executable, "-m", "netkit", "agent", "--socket", bench.agent_sock],
                      "cpu_seconds_measured_rounds": bench.agent_cpu_s,
                      "in_process_env": {"NETKIT_AGENT_SOCKET": NO_AGENT}},
            "subnet": SUBNET,
            "portmap_chain": {"subnet": CHAIN_SUBNET, "hosts": bench.chain_hosts,
                              "plugins": {impl: list(CHAIN_PLUGINS[impl]) for impl in ATTACH_IMPLS},
                              "netkit_firewall_backend": NETKIT_FIREWALL,
                              "host_ports": [CHAIN_HOSTPORT_BASE, CHAIN_HOSTPORT_BASE + bench.chain_round - 1],
                              "container_port": CHAIN_CONTAINER_PORT, "protocol": "tcp",
                              "execs_per_sample": 2},
            "baseline_ip_netns_exec_true": {"summary": base, "samples": bench.baseline},
            "operations": {
                r: {impl: {"raw": summary(xs), "minus_baseline": summary(net[r][impl]), "samples": xs}
                    for impl, xs in bench.samples[r].items()}
                for r in bench.samples
            },
            "rows": {
                label: {"row": r, "netkit_variant": v,
                        "ratio_median_raw": raw_rows[k][1]["median"] / raw_rows[k][2]["median"],
                        "ratio_median_minus_baseline": net_rows[k][1]["median"] / net_rows[k][2]["median"]}
                for k, (label, r, v) in enumerate(rows)
            },
            "warmup_samples": bench.warmup_samples,
            "sanity_problems": sanity,
            "cleanup_problems": bench.cleanup_problems,
        }
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if (bench.cleanup_problems or sanity) else 0


if __name__ == "__main__":
    sys.exit(main())
