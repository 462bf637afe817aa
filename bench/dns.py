#!/usr/bin/env python3
"""netkit-dns's resolver against aardvark-dns 1.4 (Debian's, standalone), side by side in one run.

Run as root from the repository root::

    .venv/bin/python bench/dns.py [--containers 20] [--rounds 3] [--seconds 5] [--queries 1000] [--json out.json]

A sandbox host with one bridge network: ``--containers`` containers attached through netkit-bridge and
netkit-dns (through a warm agent, as the default install runs them), named c0, c1, ... (the first four
also under the alias "svc"), and a client container.  aardvark-dns runs in the same host on a config of
the same records, listening on a second address of the same bridge.  The client asks both for the
containers' bare names (type A), the rounds interleaved:

- throughput: dnsperf (DNS-OARC's, Debian's package) for ``--seconds`` with 8 clients and 200 queries
  outstanding: queries per second and its average latency;
- latency: a client of our own sending ``--queries`` queries one at a time (UDP, 2 s timeout), each
  timed from send to answer: median and p99 (the client's own cost is the same for both servers).

And the cost of DNS to a container start: netkit-dns's ADD (the plugin exec through the agent; the
first one, which starts the daemon, reported on its own) next to netkit-bridge's ADD.  A network
without DNS has no netkit-dns in its conflist: its containers run nothing of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.bench import Run, main, parser, pct, rounds, summary, timed  # noqa: E402
from harness.hostns import Netns  # noqa: E402
from netkit.dns import control  # noqa: E402
from netkit.net import netns as nk_netns  # noqa: E402

AARDVARK = "/usr/lib/podman/aardvark-dns"
SUBNET, GATEWAY, AARDVARK_ADDR = "10.77.0.0/24", "10.77.0.1", "10.77.0.254"
NETKIT, AARDVARK_ROW = "netkit-dns", "aardvark-dns 1.4"
SERVERS = {NETKIT: GATEWAY, AARDVARK_ROW: AARDVARK_ADDR}
# One query at a time, timed from send to answer, printed as microseconds (run inside the client).
LATENCY_CLIENT = r"""
import socket, sys, time, random
from dnslib import DNSRecord
server, n, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.connect((server, 53))
out, lost = [], 0
for i in range(n):
    q = DNSRecord.question(names[i % len(names)]); q.header.id = random.getrandbits(16); data = q.pack()
    t0 = time.perf_counter_ns(); s.send(data)
    try:
        while s.recv(4096)[:2] != data[:2]:
            pass
        out.append((time.perf_counter_ns() - t0) / 1000)
    except socket.timeout:
        lost += 1
print(lost, " ".join(f"{v:.1f}" for v in out))
"""


class DnsRun(Run):
    prefix = "nkd"

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.host: Netns | None = None
        self.client: Netns | None = None
        self.aardvark_dir = ""
        self.records_dir = ""
        self.names: list[str] = []
        self.add_ms: dict[str, list[float]] = {"netkit-bridge": [], "netkit-dns": []}
        self.first_dns_add = 0.0
        self.qps: dict[str, list[float]] = {NETKIT: [], AARDVARK_ROW: []}
        self.perf_avg_ms: dict[str, list[float]] = {NETKIT: [], AARDVARK_ROW: []}
        self.latency_us: dict[str, list[float]] = {NETKIT: [], AARDVARK_ROW: []}
        self.lost: dict[str, int] = {NETKIT: 0, AARDVARK_ROW: 0}

    def _env(self, command: str, ctr: str, args: str = "") -> dict[str, str]:
        assert self.agent is not None
        env = {"CNI_COMMAND": command, "CNI_PATH": self.bin_dir, "PATH": os.environ.get("PATH", ""),
               "CNI_CONTAINERID": ctr, "CNI_NETNS": f"/run/netns/{ctr}", "CNI_IFNAME": "eth0",
               "NETKIT_AGENT_SOCKET": self.agent.path}
        if args:
            env["CNI_ARGS"] = args
        return env

    def _plugin(self, plugin: str, conf: dict[str, Any], ctr: str, args: str = "") -> tuple[float, dict[str, Any]]:
        assert self.host is not None
        ms, rc, out, err, _ = timed([*self.host.enter(), os.path.join(self.bin_dir, plugin)],
                                    self._env("ADD", ctr, args), stdin=json.dumps(conf).encode(), own_session=False)
        if rc != 0:
            raise RuntimeError(f"{plugin} ADD failed: {out} {err}")
        return ms, json.loads(out)

    def setup(self) -> None:
        super().setup()
        self.records_dir = os.path.join(self.tmp, "dns")
        self.aardvark_dir = os.path.join(self.tmp, "aardvark")
        os.makedirs(self.aardvark_dir)
        self.start_agent()
        n = self.args.containers
        names = [f"{self.tag}-h", *(f"{self.tag}-c{i}" for i in range(n)), f"{self.tag}-client"]
        made = self.ns.add(*names, lo=True)
        self.host, self.client = made[0], made[-1]
        bridge = {"cniVersion": "1.0.0", "name": "benchnet", "type": "netkit-bridge", "bridge": f"{self.tag}br",
                  "isGateway": True, "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": SUBNET}]],
                                              "dataDir": os.path.join(self.tmp, "ipam")}}
        lines = [AARDVARK_ADDR]
        for i, ns in enumerate(made[1:]):
            name = "client" if ns is self.client else f"c{i}"
            aliases = ["svc"] if i < 4 and ns is not self.client else []
            args = f"IgnoreUnknown=1;K8S_POD_NAME={name}"
            ms, prev = self._plugin("netkit-bridge", bridge, ns.name, args)
            self.add_ms["netkit-bridge"].append(ms)
            dns = {"cniVersion": "1.0.0", "name": "benchnet", "type": "netkit-dns", "domainName": "dns.netkit",
                   "capabilities": {"aliases": True}, "runtimeConfig": {"aliases": {"benchnet": aliases}},
                   "dataDir": self.records_dir, "upstreams": [], "prevResult": prev}
            ms, _ = self._plugin("netkit-dns", dns, ns.name, args)
            if i == 0:
                self.first_dns_add = ms  # the daemon's start
            else:
                self.add_ms["netkit-dns"].append(ms)
            addr = prev["ips"][0]["address"].split("/")[0]
            lines.append(f"{ns.name} {addr}  {','.join([name, *aliases])}")
            if ns is not self.client:
                self.names.append(name)
        self.names.append("svc")
        with open(os.path.join(self.aardvark_dir, "benchnet"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        assert self.host is not None
        self.host.run("ip", "addr", "add", f"{AARDVARK_ADDR}/32", "dev", f"{self.tag}br", check=True)
        self.host.run(AARDVARK, "--config", self.aardvark_dir, "-p", "53", "run", check=True)
        for server in SERVERS.values():
            got = self.client.run("dig", "+short", f"@{server}", "c0").stdout.split()
            if len(got) != 1:
                raise RuntimeError(f"{server} does not answer c0: {got}")
        with open(os.path.join(self.tmp, "queries"), "w") as fh:
            fh.write("".join(f"{name} A\n" for name in self.names))

    def _dnsperf(self, label: str) -> None:
        assert self.client is not None
        proc = self.client.run("dnsperf", "-s", SERVERS[label], "-d", os.path.join(self.tmp, "queries"),
                               "-l", str(self.args.seconds), "-c", "8", "-q", "200", "-T", "1",
                               timeout=self.args.seconds + 60)
        qps = re.search(r"Queries per second:\s+([\d.]+)", proc.stdout)
        avg = re.search(r"Average Latency \(s\):\s+([\d.]+)", proc.stdout)
        if qps is None or avg is None:
            raise RuntimeError(f"dnsperf against {label}: {proc.stdout[-400:]} {proc.stderr[-400:]}")
        self.qps[label].append(float(qps.group(1)))
        self.perf_avg_ms[label].append(float(avg.group(1)) * 1000)

    def _latency(self, label: str) -> None:
        assert self.client is not None
        proc = self.client.run(sys.executable, "-c", LATENCY_CLIENT, SERVERS[label], str(self.args.queries),
                               ",".join(self.names), timeout=600)
        lost, _, values = proc.stdout.strip().partition(" ")
        self.lost[label] += int(lost)
        self.latency_us[label] += [float(v) for v in values.split()]

    def measure(self) -> None:
        def one_round(i: int) -> None:
            order = [NETKIT, AARDVARK_ROW] if i % 2 == 0 else [AARDVARK_ROW, NETKIT]
            for label in order:
                self._dnsperf(label)
            for label in order:
                self._latency(label)

        print(f"{self.args.rounds} rounds, dnsperf {self.args.seconds} s and {self.args.queries} timed queries "
              f"per server per round", file=sys.stderr)
        rounds(self.args.rounds, one_round)

    def report(self) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        print(f"\n{'server':<18} {'qps (median)':>13} {'dnsperf avg ms':>15} {'median us':>10} {'p99 us':>8} {'lost':>5}")
        for label in (NETKIT, AARDVARK_ROW):
            lat = self.latency_us[label]
            rows[label] = {"qps": self.qps[label], "qps_median": statistics.median(self.qps[label]),
                           "dnsperf_avg_ms": self.perf_avg_ms[label],
                           "latency_us": summary(lat) | {"p99": pct(lat, 0.99)}, "lost": self.lost[label]}
            print(f"{label:<18} {rows[label]['qps_median']:>13.0f} {statistics.median(self.perf_avg_ms[label]):>15.3f} "
                  f"{statistics.median(lat):>10.0f} {pct(lat, 0.99):>8.0f} {self.lost[label]:>5}")
        n, a = rows[NETKIT], rows[AARDVARK_ROW]
        qps_ratio = n["qps_median"] / a["qps_median"]
        lat_ratio = n["latency_us"]["median"] / a["latency_us"]["median"]
        bridge, dns = summary(self.add_ms["netkit-bridge"]), summary(self.add_ms["netkit-dns"])
        print(f"\nthroughput netkit / aardvark: {qps_ratio:.2f} (target >= 0.5)")
        print(f"median latency netkit / aardvark: {lat_ratio:.2f} (target <= 2)")
        print(f"\nADD through the agent, median of {dns['n']}: netkit-bridge {bridge['median']:.1f} ms, "
              f"netkit-dns {dns['median']:.1f} ms (p95 {dns['p95']:.1f}; target <= 10); the first netkit-dns ADD, "
              f"which starts the daemon: {self.first_dns_add:.1f} ms; a network without DNS runs no netkit-dns: 0 ms")
        return {"rows": rows, "throughput_ratio": qps_ratio, "median_latency_ratio": lat_ratio,
                "add_ms": {"netkit-bridge": bridge, "netkit-dns": dns, "netkit-dns first (daemon start)":
                           self.first_dns_add}}

    def teardown(self) -> None:
        if self.host is not None:
            with nk_netns.entered(self.host.path):
                control.stop(self.records_dir)
        pid_file = os.path.join(self.aardvark_dir, "aardvark.pid")
        if os.path.exists(pid_file):
            with open(pid_file) as fh:
                try:
                    os.kill(int(fh.read().strip()), signal.SIGTERM)
                except (ValueError, ProcessLookupError):
                    pass
        super().teardown()


def _parser() -> Any:
    ap = parser(__doc__)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=1000)
    return ap


def _check(args: Any) -> str:
    for tool in ("dnsperf", "dig"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install dnsperf dnsutils)"
    if not os.access(AARDVARK, os.X_OK):
        return f"{AARDVARK} missing (apt-get install aardvark-dns)"
    return "" if args.containers >= 5 else "--containers must be at least 5"


if __name__ == "__main__":
    sys.exit(main(_parser(), DnsRun, check=_check))
