#!/usr/bin/env python3
"""Throughput through a published port: netkit's bridge+ipam+portmap against the reference plugins.

Run as root from the repository root::

    .venv/bin/python bench/throughput.py [--seconds 5] [--rounds 1] [--json out.json]

Per implementation a sandbox host, a container attached by the chain (hostPort 15201 -> 5201/tcp) and
an "other machine" X on a veth to the host; iperf3 from (a) X to the host's address, (b) the host to
127.0.0.1, (c) the host straight to the container.  See bench/README.md.  Not part of the test suite.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.bench import BenchError, Run, apt_install, machine, main, parser  # noqa: E402
from harness.cnichain import Network  # noqa: E402
from harness.hostns import Netns, wire  # noqa: E402

NETKIT, REFERENCE = "netkit", "reference"
IMPLS = (NETKIT, REFERENCE)
PLUGINS = {NETKIT: ("netkit-bridge", "netkit-ipam", "netkit-portmap"), REFERENCE: ("bridge", "host-local", "portmap")}
NETKIT_FIREWALL = "nftables"            # NETKIT_FIREWALL_BACKEND for netkit's plugins: its own nft table
HOST_UPLINK, X_UPLINK = "10.31.0.1", "10.31.0.2"   # /24 on the veth pair host <-> X
SUBNET = "10.32.0.0/24"                 # the container network (each sandbox has its own)
HOST_PORT, CONTAINER_PORT = 15201, 5201
CASES = ("a", "b", "c")
CASE_LABELS = {"a": f"(a) X -> {HOST_UPLINK}:{HOST_PORT} (DNAT)",
               "b": f"(b) host -> 127.0.0.1:{HOST_PORT} (localhost)",
               "c": f"(c) host -> container:{CONTAINER_PORT} (direct)"}


class Sandbox(Network):
    """One implementation's world: sandbox host, a container attached by the CNI chain, machine X."""

    container_port = CONTAINER_PORT

    def __init__(self, run: "Bench", impl: str) -> None:
        k = "n" if impl == NETKIT else "r"
        super().__init__(f"{run.tag}-{k}h", run.bin_dir, impl == NETKIT, f"tput-{impl}", f"{run.tag}{k}br", SUBNET,
                         os.path.join(run.tmp, "data", impl), None, NETKIT_FIREWALL if impl == NETKIT else "", impl)
        self.container, self.x = f"{run.tag}-{k}c", f"{run.tag}-{k}x"
        self.run = run
        self.result: dict[str, Any] | None = None           # the chain's ADD result, once attached
        self.container_ip = ""

    def setup(self) -> None:
        self.run.ns.add(self.host, self.container, self.x, lo=True)
        wire(Netns(self.host), Netns(self.x), [HOST_UPLINK], X_UPLINK)  # the other machine
        # The CNI chain, as a runtime runs it: bridge ADD, then portmap ADD with prevResult.
        _, self.result, _ = self.chain_add(self.container, HOST_PORT)
        self.container_ip = self.result["ips"][0]["address"].split("/")[0]

    def detach(self) -> None:
        """portmap DEL, then bridge DEL (reverse order, prevResult as libcni sends it)."""
        if self.result is not None:
            prev, self.result = self.result, None
            self.chain_del(self.container, HOST_PORT, prev)

    def measure(self, case: str, seconds: int, iperf3: str) -> dict[str, Any]:
        """One iperf3 test: a one-shot server in the container, the client where ``case`` says."""
        client_ns, addr, port = {"a": (self.x, HOST_UPLINK, HOST_PORT), "b": (self.host, "127.0.0.1", HOST_PORT),
                                 "c": (self.host, self.container_ip, CONTAINER_PORT)}[case]
        # `ip netns exec` execs the command in place: the Popen's pid is iperf3's own.
        server = subprocess.Popen(["ip", "netns", "exec", self.container, iperf3, "-s", "-1", "-p", str(CONTAINER_PORT)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.run.procs.append(server)
        try:
            deadline = time.monotonic() + 10
            while not Netns(self.container).run("ss", "-Hltn", f"sport = :{CONTAINER_PORT}").stdout.strip():
                if server.poll() is not None:
                    raise BenchError(f"iperf3 server in {self.container} exited ({server.returncode})")
                if time.monotonic() > deadline:
                    raise BenchError(f"iperf3 server in {self.container} not listening after 10 s")
                time.sleep(0.05)
            proc = Netns(client_ns).run(iperf3, "-c", addr, "-p", str(port), "-t", str(seconds), "-J",
                                        "--connect-timeout", "3000", timeout=seconds + 30)
            try:
                doc = json.loads(proc.stdout)
            except ValueError:
                doc = {"error": f"no JSON (exit {proc.returncode}): {proc.stdout[:300]!r} {proc.stderr[:300]!r}"}
            if proc.returncode != 0 or "error" in doc:
                raise BenchError(f"{self.label} ({case}) iperf3 -c {addr} -p {port} in {client_ns} failed: "
                                 f"{doc.get('error')}")
            server.wait(timeout=10)                      # -1: it exits after its one test
        finally:
            stop(server)
        end = doc["end"]
        return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
                "sender_gbps": end["sum_sent"]["bits_per_second"] / 1e9,
                "retransmits": end["sum_sent"].get("retransmits"),
                "cpu": end.get("cpu_utilization_percent"), "client_netns": client_ns, "target": f"{addr}:{port}"}


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class Bench(Run):
    prefix = "nkp"

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.boxes: dict[str, Sandbox] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.samples: dict[str, dict[str, list[dict[str, Any]]]] = {c: {i: [] for i in IMPLS} for c in CASES}

    def setup(self) -> None:
        if not apt_install("iperf3", lambda: shutil.which("iperf3") is not None):
            raise BenchError("could not install iperf3")
        self.iperf3 = shutil.which("iperf3") or "iperf3"
        self.version = subprocess.run([self.iperf3, "--version"], capture_output=True, text=True).stdout.splitlines()[0].strip()
        super().setup()
        for impl in IMPLS:
            box = self.boxes[impl] = Sandbox(self, impl)
            box.setup()
        for impl, box in self.boxes.items():
            print(f"{impl}: {'+'.join(PLUGINS[impl])} in sandbox host {box.host}, container {box.container} "
                  f"({box.container_ip}), machine X {box.x}"
                  + (f"; NETKIT_FIREWALL_BACKEND={NETKIT_FIREWALL}" if impl == NETKIT else "; iptables"), flush=True)

    def measure(self) -> None:
        for r in range(self.args.rounds):
            for k, case in enumerate(CASES):
                # Alternate which implementation goes first, so neither always meets a warmer machine.
                for impl in IMPLS if (r + k) % 2 == 0 else IMPLS[::-1]:
                    print(f"\r  round {r + 1}/{self.args.rounds}: ({case}) {impl:<9}", end="", file=sys.stderr, flush=True)
                    self.samples[case][impl].append(self.boxes[impl].measure(case, self.args.seconds, self.iperf3))
        print(file=sys.stderr)
        for box in self.boxes.values():                # DEL in the normal path, so its failure shows
            box.detach()

    def teardown(self) -> None:
        for proc in self.procs:  # killed and reaped: none can still run afterwards
            stop(proc)
        for box in self.boxes.values():                 # CNI DEL first; the namespaces take the rest
            try:
                box.detach()
            except (BenchError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                self.cleanup_problems.append(f"{box.label} DEL: {exc}")
        super().teardown()

    def report(self) -> dict[str, Any]:
        g = {case: {impl: statistics.median(s["gbps"] for s in self.samples[case][impl]) for impl in IMPLS}
             for case in CASES}

        def ratio(x: float, y: float) -> str:
            return f"{x / y:.2f}" if y > 0 else "n/a"

        m = machine()
        print(f"\n{self.version}; kernel {m['kernel']}, {m['cpus']} CPUs; client, server and forwarding share these CPUs")
        what = "median of rounds, " if self.args.rounds > 1 else ""
        head = f"{'path':<40} {'netkit':>8} {'reference':>10} {'netkit/ref':>11}"
        print(f"Gbit/s ({what}as received), iperf3 TCP, 1 stream, {self.args.seconds} s per test, "
              f"{self.args.rounds} round(s)\n{head}\n" + "-" * len(head))
        for case in CASES:
            print(f"{CASE_LABELS[case]:<40} {g[case][NETKIT]:>8.2f} {g[case][REFERENCE]:>10.2f} "
                  f"{ratio(g[case][NETKIT], g[case][REFERENCE]):>11}")
        for case in ("a", "b"):
            print(f"{f'ratio {case}/c':<40} {ratio(g[case][NETKIT], g['c'][NETKIT]):>8} "
                  f"{ratio(g[case][REFERENCE], g['c'][REFERENCE]):>10}")
        retr = {case: {impl: [s["retransmits"] for s in self.samples[case][impl]] for impl in IMPLS} for case in CASES}
        print("retransmits (sender, per test): " + "; ".join(
            f"({case}) netkit {retr[case][NETKIT]} reference {retr[case][REFERENCE]}" for case in CASES))
        return {"seconds": self.args.seconds, "rounds": self.args.rounds, "iperf3": self.version, "machine": m,
                "plugins": {i: list(PLUGINS[i]) for i in IMPLS}, "netkit_firewall_backend": NETKIT_FIREWALL,
                "topology": {"host_uplink": HOST_UPLINK, "x": X_UPLINK, "container_subnet": SUBNET,
                             "host_port": HOST_PORT, "container_port": CONTAINER_PORT},
                "gbps_median": g,
                "ratios": {"a/c": {i: g["a"][i] / g["c"][i] for i in IMPLS}, "b/c": {i: g["b"][i] / g["c"][i] for i in IMPLS},
                           "netkit/reference": {c: g[c][NETKIT] / g[c][REFERENCE] for c in CASES}},
                "samples": self.samples}


if __name__ == "__main__":
    ap = parser(__doc__)
    ap.add_argument("--seconds", type=int, default=5, help="length of each iperf3 test (default 5)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every test this often, report medians (default 1)")
    sys.exit(main(ap, Bench, PLUGINS[REFERENCE], (), lambda a: "--seconds and --rounds must be at least 1"
                  if a.seconds < 1 or a.rounds < 1 else ""))
