#!/usr/bin/env python3
"""Latency of netkit's CNI plugins against Debian's reference (Go) plugins, measured side by side.

Run as root from the repository root::

    .venv/bin/python bench/cni_latency.py [--runs 30] [--warmup 2] [--json out.json]

VERSION, ADD/DEL bridge+ipam and ADD/DEL bridge+ipam+portmap, each plugin exec'd as ``ip netns exec
HOST PLUGIN`` in throwaway sandbox hosts; netkit in-process and through a `netkit agent` of the run.
See bench/README.md.  Not part of the test suite.
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.bench import NO_AGENT, BenchError, Run, machine, main, parser, rounds, summary  # noqa: E402
from harness.cnichain import Network, exec_in  # noqa: E402
from harness.agent import Agent  # noqa: E402
from harness.hostns import Netns  # noqa: E402

NETKIT, AGENT, REFERENCE = "netkit", "netkit-agent", "reference"
IMPLS = (NETKIT, REFERENCE)                 # the VERSION rows: netkit in-process against the reference
ATTACH_IMPLS = (NETKIT, AGENT, REFERENCE)   # the ADD/DEL rows: netkit in-process, through the agent, reference
VARIANT_LABEL = {NETKIT: "in-process", AGENT: "agent"}
VERSION_ROWS = [("VERSION bridge", "bridge"), ("VERSION ipam", "host-local"), ("VERSION loopback", "loopback")]
ADD_ROW, DEL_ROW = "ADD bridge+ipam", "DEL bridge+ipam"
CHAIN_ADD_ROW, CHAIN_DEL_ROW = "ADD bridge+ipam+portmap", "DEL bridge+ipam+portmap"
# Plugin execs summed into one sample of each row (the minus-baseline table subtracts that many baselines).
EXECS_PER_SAMPLE = {CHAIN_ADD_ROW: 2, CHAIN_DEL_ROW: 2}
BASELINE_ROW = "baseline: ip netns exec /bin/true"
SUBNET, CHAIN_SUBNET = "10.99.0.0/16", "10.98.0.0/16"
CHAIN_HOSTPORT_BASE = 20000         # round k (warm-up rounds included) publishes hostPort BASE + k
NETKIT_FIREWALL = "nftables"        # NETKIT_FIREWALL_BACKEND for the netkit chains: its own nft table
Samples = dict[str, dict[str, list[float]]]


class Bench(Run):
    prefix = "nkb"
    agent: Agent

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.host = f"{self.tag}-h"
        # The portmap chains: one sandbox host (and bridge) per implementation, the agent's included
        # (its nft table is netkit's, but its own: the two netkit variants never share state).
        self.chain_hosts = {NETKIT: f"{self.tag}-pn", AGENT: f"{self.tag}-pa", REFERENCE: f"{self.tag}-pr"}
        self.chain_round = 0                               # hostPort = CHAIN_HOSTPORT_BASE + this
        self.counter = 0
        self.agent_cpu_s = 0.0                             # the agent's utime+stime over the measured rounds
        self.samples: Samples = {}
        self.warmup_samples: Samples = {}
        self.baseline: list[float] = []

    def setup(self) -> None:
        super().setup()
        agent = self.start_agent().path
        sockets = {NETKIT: NO_AGENT, AGENT: agent, REFERENCE: None}
        short = {NETKIT: "nk", AGENT: "ag", REFERENCE: "ref"}
        self.nets = {impl: Network(self.host, self.bin_dir, impl != REFERENCE, f"bench-{impl}", f"{self.tag}{short[impl]}",
                                   SUBNET, os.path.join(self.tmp, "data", impl), sockets[impl])
                     for impl in ATTACH_IMPLS}
        self.chains = {impl: Network(self.chain_hosts[impl], self.bin_dir, impl != REFERENCE, f"benchpm-{impl}",
                                     f"{self.tag}p{short[impl]}", CHAIN_SUBNET, os.path.join(self.tmp, "chaindata", impl),
                                     sockets[impl], NETKIT_FIREWALL if impl != REFERENCE else "")
                       for impl in ATTACH_IMPLS}
        self.ns.add(self.host, *self.chain_hosts.values(), lo=True)
        print(f"sandbox host netns {self.host}; bridges {self.nets[NETKIT].bridge} (netkit in-process), "
              f"{self.nets[AGENT].bridge} (netkit agent), {self.nets[REFERENCE].bridge} (reference); "
              f"{self.args.warmup} warm-up + {self.args.runs} measured rounds", flush=True)
        print(f"portmap chains: netkit in-process in {self.chain_hosts[NETKIT]} (bridge {self.chains[NETKIT].bridge}), "
              f"netkit agent in {self.chain_hosts[AGENT]} (bridge {self.chains[AGENT].bridge}), both "
              f"NETKIT_FIREWALL_BACKEND={NETKIT_FIREWALL}; reference in {self.chain_hosts[REFERENCE]} (bridge "
              f"{self.chains[REFERENCE].bridge}, iptables)", flush=True)
        print(f"agent: pid {self.agent.pid}, socket {agent}; in-process "
              f"rows run with NETKIT_AGENT_SOCKET={NO_AGENT}", flush=True)

    def containers(self) -> list[str]:
        names = [f"{self.tag}-c{self.counter + k + 1}" for k in range(len(ATTACH_IMPLS))]
        self.counter += len(names)
        self.ns.add(*names)
        return names

    def version(self, impl: str, plugin: str) -> float:
        net = self.nets[impl]
        e = exec_in(self.host, [net.exe(net.type(plugin))], net.env("VERSION"), b'{"cniVersion":"1.0.0"}')
        if e.code != 0 or "1.0.0" not in (e.json() or {}).get("supportedVersions", []):
            raise BenchError(f"VERSION of {net.type(plugin)} failed ({e.why()})")
        return e.ms

    def one_round(self, i: int, into: Samples, baseline: list[float]) -> None:
        # Alternate which implementation goes first, so neither always meets a warmer cache; the
        # three of the ADD/DEL rows take turns (rotation), each first once every three rounds.
        order = IMPLS if i % 2 == 0 else IMPLS[::-1]
        k = i % len(ATTACH_IMPLS)
        attach_order = ATTACH_IMPLS[k:] + ATTACH_IMPLS[:k]
        self.agent.check()

        def put(row: str, impl: str, ms: float) -> None:
            into.setdefault(row, {}).setdefault(impl, []).append(ms)

        e = exec_in(self.host, ["/bin/true"], {"PATH": os.environ.get("PATH", "")}, b"")
        if e.code != 0:
            raise BenchError(f"ip netns exec {self.host} /bin/true failed: {e.err!r}")
        baseline.append(e.ms)
        for row, plugin in VERSION_ROWS:
            for impl in order:
                put(row, impl, self.version(impl, plugin))
        containers = dict(zip(attach_order, self.containers()))
        results = {}
        for impl in attach_order:
            e, results[impl] = self.nets[impl].add(containers[impl])
            put(ADD_ROW, impl, e.ms)
        for impl in attach_order:
            put(DEL_ROW, impl, self.nets[impl].delete(containers[impl], results[impl]).ms)
        self.ns.delete(*containers.values())
        # The portmap chain, each implementation in its own sandbox host; a new hostPort every round.
        port = CHAIN_HOSTPORT_BASE + self.chain_round
        self.chain_round += 1
        containers = dict(zip(attach_order, self.containers()))
        for impl in attach_order:
            ms, results[impl], _ = self.chains[impl].chain_add(containers[impl], port, checked=True)
            put(CHAIN_ADD_ROW, impl, ms)
        for impl in attach_order:
            put(CHAIN_DEL_ROW, impl, self.chains[impl].chain_del(containers[impl], port, results[impl], checked=True)[0])
        self.ns.delete(*containers.values())
        self.agent.check()

    def measure(self) -> None:
        warm_base: list[float] = []
        for i in range(self.args.warmup):  # first ADD creates the bridge; page cache; not counted
            self.one_round(i, self.warmup_samples, warm_base)
        cpu0 = self.agent.cpu_seconds()
        rounds(self.args.runs, lambda i: self.one_round(i, self.samples, self.baseline))
        self.agent_cpu_s = self.agent.cpu_seconds() - cpu0

    def sanity(self) -> list[str]:
        """After all DELs: no lease, veth or port-mapping rule left in any sandbox host, and each chain
        host holds only its own implementation's firewall tables."""
        problems = [] if self.agent_cpu_s > 0 else [
            "the agent used no CPU time during the measured rounds: did the launchers fall back in-process?"]
        for impl, net in self.nets.items():
            if net.leases():
                problems.append(f"{impl}: leases left after DEL in {net.data_dir}: {net.leases()[:5]}")
        bridges = sorted(["lo", *(net.bridge for net in self.nets.values())])
        if (links := sorted(Netns(self.host).links())) != bridges:
            problems.append(f"sandbox host {self.host}: links {links}, expected {bridges}")
        for net in self.chains.values():
            problems += net.leftovers()
        return problems

    def report(self) -> dict[str, object]:
        base = summary(self.baseline)
        base_med = base["median"]
        rows = [(r, r, NETKIT) for r, _ in VERSION_ROWS]
        for r in (ADD_ROW, DEL_ROW, CHAIN_ADD_ROW, CHAIN_DEL_ROW):
            rows += [(f"{r} [{VARIANT_LABEL[v]}]", r, v) for v in (NETKIT, AGENT)]
        net = {r: {impl: [x - EXECS_PER_SAMPLE.get(r, 1) * base_med for x in xs] for impl, xs in s.items()}
               for r, s in self.samples.items()}
        raw_rows = [(label, summary(self.samples[r][v]), summary(self.samples[r][REFERENCE])) for label, r, v in rows]
        net_rows = [(label, summary(net[r][v]), summary(net[r][REFERENCE])) for label, r, v in rows]
        m = machine()
        print(f"\n{self.args.runs} interleaved runs per cell, ms; kernel {m['kernel']}, {m['cpus']} CPUs, "
              f"Python {m['python']}")
        print(f"{BASELINE_ROW}: median {base_med:.1f}, p95 {base['p95']:.1f}\n")
        print(table(raw_rows, "wall time of `ip netns exec HOST <plugin>` (spawn to exit)") + "\n")
        print(table(net_rows, f"same, minus the baseline median ({base_med:.1f} ms) per exec: the plugins' own time"))
        print(f"""
ratio = netkit median / reference median (the same reference samples for both netkit variants).
[in-process]: NETKIT_AGENT_SOCKET=/nonexistent; [agent]: the launchers forward to `netkit agent`
(started by this run; {self.agent_cpu_s:.2f} s of its CPU time over the measured rounds).
ADD/DEL = bridge plugin exec incl. its IPAM delegate exec.
ADD/DEL bridge+ipam+portmap = sum of 2 execs (ADD: bridge, then portmap with prevResult; DEL: portmap,
then bridge), one tcp mapping, each implementation in its own sandbox host; minus 2 baselines.""")
        return {
            "runs": self.args.runs, "warmup_rounds": self.args.warmup, "machine": m, "unit": "ms",
            "method": "wall time from spawning `ip netns exec HOST plugin` to its exit; netkit and "
                      "reference interleaved in every round, order alternating per round (VERSION) or "
                      "rotating among netkit in-process, netkit agent and reference (ADD/DEL)",
            "agent": {"command": self.agent.argv, "cpu_seconds_measured_rounds": self.agent_cpu_s,
                      "in_process_env": {"NETKIT_AGENT_SOCKET": NO_AGENT}},
            "subnet": SUBNET,
            "portmap_chain": {"subnet": CHAIN_SUBNET, "hosts": self.chain_hosts,
                              "plugins": {impl: [c.type("bridge"), c.type("portmap")] for impl, c in self.chains.items()},
                              "netkit_firewall_backend": NETKIT_FIREWALL,
                              "host_ports": [CHAIN_HOSTPORT_BASE, CHAIN_HOSTPORT_BASE + self.chain_round - 1],
                              "container_port": 80, "protocol": "tcp", "execs_per_sample": 2},
            "baseline_ip_netns_exec_true": {"summary": base, "samples": self.baseline},
            "operations": {r: {impl: {"raw": summary(xs), "minus_baseline": summary(net[r][impl]), "samples": xs}
                               for impl, xs in s.items()} for r, s in self.samples.items()},
            "rows": {label: {"row": r, "netkit_variant": v,
                             "ratio_median_raw": raw_rows[k][1]["median"] / raw_rows[k][2]["median"],
                             "ratio_median_minus_baseline": net_rows[k][1]["median"] / net_rows[k][2]["median"]}
                     for k, (label, r, v) in enumerate(rows)},
            "warmup_samples": self.warmup_samples,
        }


def table(rows: list[tuple[str, dict[str, float], dict[str, float]]], title: str) -> str:
    head = f"{'operation':<38} {'netkit med':>10} {'p95':>8} {'ref med':>9} {'p95':>8} {'ratio':>7}"
    lines = [title, head, "-" * len(head)]
    for label, nk, ref in rows:
        ratio = f"{nk['median'] / ref['median']:.2f}" if ref["median"] > 0 else "n/a"
        lines.append(f"{label:<38} {nk['median']:>10.1f} {nk['p95']:>8.1f} {ref['median']:>9.1f} "
                     f"{ref['p95']:>8.1f} {ratio:>7}")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=30, help="measured rounds (default 30)")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted rounds first (default 2)")
    sys.exit(main(ap, Bench, ("bridge", "host-local", "loopback", "portmap"), ("nft", "iptables-save"),
                  lambda a: "--runs and --warmup must be at least 1 (the first ADD also creates the bridge)"
                  if a.runs < 1 or a.warmup < 1 else ""))
