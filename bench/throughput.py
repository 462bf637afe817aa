#!/usr/bin/env python3
"""Throughput through a published port: netkit's bridge+ipam+portmap against the reference plugins.

Run as root from the repository root::

    .venv/bin/python bench/throughput.py [--seconds 5] [--rounds 1] [--json out.json]

For each implementation, a sandbox of its own (the reference portmap writes iptables(-nft) rules,
netkit its own nft table: never both in one namespace): a sandbox "host" network namespace, one
container attached with bridge ADD then portmap ADD (hostPort 15201 -> 5201/tcp), and an "other
machine" namespace X on a veth pair to the host (host 10.31.0.1/24, X 10.31.0.2/24).  An iperf3
server runs in the container; iperf3 clients measure

  (a) X -> 10.31.0.1:15201         through hostIP:hostPort (DNAT, forwarded over the bridge)
  (b) host -> 127.0.0.1:15201      through localhost (DNAT in output, masquerade, route_localnet)
  (c) host -> container:5201       straight to the container's address (the baseline)

Traffic goes only to addresses this script assigned inside its own namespaces.  Every namespace it
made is deleted in a ``finally`` (Ctrl-C and SIGTERM included) and every iperf3 server is killed.
Installs iperf3 with apt-get if it is missing.  See bench/README.md.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchlib import run, ip, netns_names  # noqa: E402 - bench/ is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from netkit.launch import install as nk_install  # noqa: E402

REFERENCE_BIN = "/usr/lib/cni"
NETKIT, REFERENCE = "netkit", "reference"
IMPLS = (NETKIT, REFERENCE)
PLUGINS = {NETKIT: ("netkit-bridge", "netkit-ipam", "netkit-portmap"),
           REFERENCE: ("bridge", "host-local", "portmap")}
NETKIT_FIREWALL = "nftables"            # NETKIT_FIREWALL_BACKEND for netkit's plugins: its own nft table
HOST_UPLINK, X_UPLINK = "10.31.0.1", "10.31.0.2"   # /24 on the veth pair host <-> X
SUBNET = "10.32.0.0/24"                 # the container network (each sandbox has its own)
HOST_PORT, CONTAINER_PORT = 15201, 5201
CASES = ("a", "b", "c")
CASE_LABELS = {"a": f"(a) X -> {HOST_UPLINK}:{HOST_PORT} (DNAT)",
               "b": f"(b) host -> 127.0.0.1:{HOST_PORT} (localhost)",
               "c": f"(c) host -> container:{CONTAINER_PORT} (direct)"}
EXEC_TIMEOUT_S = 60


class BenchError(RuntimeError):
    """Something failed: the numbers would be meaningless."""


def ensure_iperf3() -> str:
    """The iperf3 executable; installed with apt-get (argument lists only) if missing."""
    exe = shutil.which("iperf3")
    if exe:
        return exe
    print("iperf3 not found: apt-get install -y iperf3", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")   # its debconf question keeps the default (no daemon)
    proc = subprocess.run(["apt-get", "install", "-y", "iperf3"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print("apt-get install failed; apt-get update, then once more", flush=True)
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        proc = subprocess.run(["apt-get", "install", "-y", "iperf3"], env=env, capture_output=True, text=True)
    exe = shutil.which("iperf3")
    if proc.returncode != 0 or not exe:
        raise BenchError(f"could not install iperf3: {proc.stderr.strip()[-500:]}")
    return exe


class Sandbox:
    """One implementation's world: sandbox host, a container attached by the CNI chain, machine X."""

    def __init__(self, impl: str, tag: str, bin_dir: str, data_dir: str, owner: "Bench") -> None:
        self.impl = impl
        k = "n" if impl == NETKIT else "r"
        self.host, self.container, self.x = f"{tag}-{k}h", f"{tag}-{k}c", f"{tag}-{k}x"
        self.bridge = f"{tag}{k}br"                         # <= 15 chars
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.owner = owner
        self.result: dict[str, Any] | None = None           # the chain's ADD result, once attached
        self.container_ip = ""

    # ---- CNI ----------------------------------------------------------------------------------
    def exe(self, name: str) -> str:
        return os.path.join(self.bin_dir if name.startswith("netkit-") else REFERENCE_BIN, name)

    def env(self, command: str) -> dict[str, str]:
        env = {"CNI_COMMAND": command, "CNI_PATH": f"{self.bin_dir}:{REFERENCE_BIN}",
               "CNI_NETNS": f"/run/netns/{self.container}", "CNI_IFNAME": "eth0",
               "CNI_CONTAINERID": self.container,
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        if self.impl == NETKIT:
            env["NETKIT_FIREWALL_BACKEND"] = NETKIT_FIREWALL
        return env

    def bridge_conf(self) -> dict[str, Any]:
        bridge, ipam, _ = PLUGINS[self.impl]
        return {"cniVersion": "1.0.0", "name": f"tput-{self.impl}", "type": bridge, "bridge": self.bridge,
                "isGateway": True,
                "ipam": {"type": ipam, "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                         "dataDir": self.data_dir}}

    def portmap_conf(self, prev: dict[str, Any]) -> dict[str, Any]:
        # "protocol" spelled out: the reference portmap requires it (netkit defaults to tcp).
        return {"cniVersion": "1.0.0", "name": f"tput-{self.impl}", "type": PLUGINS[self.impl][2],
                "capabilities": {"portMappings": True},
                "runtimeConfig": {"portMappings": [{"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT,
                                                    "protocol": "tcp"}]},
                "prevResult": prev}

    def cni(self, command: str, conf: dict[str, Any]) -> dict[str, Any] | None:
        proc = subprocess.run(["ip", "netns", "exec", self.host, self.exe(conf["type"])],
                              input=json.dumps(conf).encode(), env=self.env(command), capture_output=True,
                              timeout=EXEC_TIMEOUT_S)
        if proc.returncode != 0:
            raise BenchError(f"{command} via {conf['type']} failed (exit {proc.returncode}): "
                             f"stdout {proc.stdout[:500]!r} stderr {proc.stderr[:500]!r}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    # ---- setup / teardown ---------------------------------------------------------------------
    def in_ns(self, ns: str, *argv: str) -> None:
        proc = ip("netns", "exec", ns, *argv)
        if proc.returncode != 0:
            raise BenchError(f"in {ns}: {shlex.join(argv)} failed: {proc.stderr.strip()}")

    def setup(self) -> None:
        for ns in (self.host, self.container, self.x):
            self.owner.netns_add(ns)
            self.in_ns(ns, "ip", "link", "set", "lo", "up")
        # The other machine: a veth pair, host side uplink0, X side eth0 (as Sandbox.machine in tests/).
        self.in_ns(self.host, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0",
                   "netns", self.x)
        self.in_ns(self.host, "ip", "addr", "add", f"{HOST_UPLINK}/24", "dev", "uplink0")
        self.in_ns(self.host, "ip", "link", "set", "uplink0", "up")
        self.in_ns(self.x, "ip", "addr", "add", f"{X_UPLINK}/24", "dev", "eth0")
        self.in_ns(self.x, "ip", "link", "set", "eth0", "up")
        # The CNI chain, as a runtime runs it: bridge ADD, then portmap ADD with prevResult.
        prev = self.cni("ADD", self.bridge_conf())
        addrs = [ipaddress.ip_interface(i["address"]) for i in (prev or {}).get("ips", [])]
        if not addrs or addrs[0] not in ipaddress.ip_network(SUBNET):
            raise BenchError(f"{self.impl} bridge ADD returned no address in {SUBNET}: {prev!r}")
        self.result = prev
        result = self.cni("ADD", self.portmap_conf(prev))
        if not result or result.get("ips") != prev["ips"]:
            raise BenchError(f"{self.impl} portmap ADD did not pass the bridge's result through: {result!r}")
        self.container_ip = str(addrs[0].ip)

    def detach(self) -> None:
        """portmap DEL, then bridge DEL (reverse order, prevResult as libcni sends it)."""
        if self.result is None:
            return
        prev, self.result = self.result, None
        self.cni("DEL", self.portmap_conf(prev))
        self.cni("DEL", dict(self.bridge_conf(), prevResult=prev))

    # ---- iperf3 -------------------------------------------------------------------------------
    def listening(self) -> bool:
        out = ip("netns", "exec", self.container, "ss", "-Hltn", f"sport = :{CONTAINER_PORT}").stdout
        return bool(out.strip())

    def measure(self, case: str, seconds: int, iperf3: str) -> dict[str, Any]:
        """One iperf3 test: a one-shot server in the container, the client where ``case`` says."""
        client_ns, addr, port = {"a": (self.x, HOST_UPLINK, HOST_PORT),
                                 "b": (self.host, "127.0.0.1", HOST_PORT),
                                 "c": (self.host, self.container_ip, CONTAINER_PORT)}[case]
        server = self.owner.start(["ip", "netns", "exec", self.container, iperf3, "-s", "-1",
                                   "-p", str(CONTAINER_PORT)])
        try:
            deadline = time.monotonic() + 10
            while not self.listening():
                if server.poll() is not None:
                    raise BenchError(f"iperf3 server in {self.container} exited ({server.returncode})")
                if time.monotonic() > deadline:
                    raise BenchError(f"iperf3 server in {self.container} not listening after 10 s")
                time.sleep(0.05)
            proc = run(["ip", "netns", "exec", client_ns, iperf3, "-c", addr, "-p", str(port), "-t", str(seconds),
                        "-J", "--connect-timeout", "3000"], timeout=seconds + 30)
            try:
                doc = json.loads(proc.stdout)
            except ValueError:
                doc = {"error": f"no JSON (exit {proc.returncode}): {proc.stdout[:300]!r} {proc.stderr[:300]!r}"}
            if proc.returncode != 0 or "error" in doc:
                raise BenchError(f"{self.impl} ({case}) iperf3 -c {addr} -p {port} in {client_ns} failed: "
                                 f"{doc.get('error')}")
            server.wait(timeout=10)                      # -1: it exits after its one test
        finally:
            self.owner.stop(server)
        end = doc["end"]
        return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
                "sender_gbps": end["sum_sent"]["bits_per_second"] / 1e9,
                "retransmits": end["sum_sent"].get("retransmits"),
                "cpu": end.get("cpu_utilization_percent"),
                "client_netns": client_ns, "target": f"{addr}:{port}"}


class Bench:
    def __init__(self, seconds: int, rounds: int) -> None:
        self.seconds = seconds
        self.rounds = rounds
        while True:                                        # prefix of every namespace we make
            self.tag = f"nkp{secrets.token_hex(3)}"
            if not any(n.startswith(self.tag) for n in netns_names()):
                break
        self.tmp = ""
        self.boxes: dict[str, Sandbox] = {}
        self.live_netns: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.samples: dict[str, dict[str, list[dict[str, Any]]]] = {c: {i: [] for i in IMPLS} for c in CASES}
        self.cleanup_problems: list[str] = []

    def netns_add(self, name: str) -> None:
        proc = ip("netns", "add", name)
        if proc.returncode != 0:
            raise BenchError(f"ip netns add {name} failed: {proc.stderr.strip()}")
        self.live_netns.append(name)

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs the command in place: the Popen's pid is iperf3's own.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="netkit-tput-")
        bin_dir = os.path.join(self.tmp, "bin")
        nk_install.install(bin_dir=bin_dir, conf_dir=os.path.join(self.tmp, "net.d"))
        for impl in IMPLS:
            box = Sandbox(impl, self.tag, bin_dir, os.path.join(self.tmp, "data", impl), self)
            self.boxes[impl] = box
            box.setup()

    def run(self, iperf3: str) -> None:
        for r in range(self.rounds):
            for k, case in enumerate(CASES):
                # Alternate which implementation goes first, so neither always meets a warmer machine.
                order = IMPLS if (r + k) % 2 == 0 else IMPLS[::-1]
                for impl in order:
                    print(f"\r  round {r + 1}/{self.rounds}: ({case}) {impl:<9}", end="", file=sys.stderr, flush=True)
                    self.samples[case][impl].append(self.boxes[impl].measure(case, self.seconds, iperf3))
        print(file=sys.stderr)

    def teardown(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        for box in self.boxes.values():                 # CNI DEL first; the namespaces take the rest
            try:
                box.detach()
            except (BenchError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                self.cleanup_problems.append(f"{box.impl} DEL: {exc}")
        hosts = {box.host for box in self.boxes.values()}
        for name in [n for n in self.live_netns if n not in hosts]:   # containers and X before their hosts
            self.netns_del(name)
        for name in [n for n in self.live_netns if n in hosts]:
            self.netns_del(name)
        for name in sorted(n for n in netns_names() if n.startswith(self.tag + "-")):
            self.cleanup_problems.append(f"namespace {name} still there; deleting it")
            self.netns_del(name)
        left = sorted(n for n in netns_names() if n.startswith(self.tag))
        if left:
            self.cleanup_problems.append(f"namespaces still present after cleanup: {', '.join(left)}")
        running = [p.pid for p in self.procs if p.poll() is None]
        if running:
            self.cleanup_problems.append(f"iperf3 processes still running: {running}")
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def netns_del(self, name: str) -> None:
        proc = ip("netns", "del", name)
        if proc.returncode != 0 and name in netns_names():
            self.cleanup_problems.append(f"ip netns del {name} failed: {proc.stderr.strip()}")


def med(samples: list[dict[str, Any]]) -> float:
    return statistics.median(s["gbps"] for s in samples)


def report(bench: Bench) -> tuple[str, dict[str, Any]]:
    g = {case: {impl: med(bench.samples[case][impl]) for impl in IMPLS} for case in CASES}

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}" if y > 0 else "n/a"

    what = "median of rounds, " if bench.rounds > 1 else ""
    head = f"{'path':<40} {'netkit':>8} {'reference':>10} {'netkit/ref':>11}"
    lines = [f"Gbit/s ({what}as received), iperf3 TCP, 1 stream, {bench.seconds} s per test, "
             f"{bench.rounds} round(s)", head, "-" * len(head)]
    for case in CASES:
        lines.append(f"{CASE_LABELS[case]:<40} {g[case][NETKIT]:>8.2f} {g[case][REFERENCE]:>10.2f} "
                     f"{ratio(g[case][NETKIT], g[case][REFERENCE]):>11}")
    for case in ("a", "b"):
        lines.append(f"{f'ratio {case}/c':<40} {ratio(g[case][NETKIT], g['c'][NETKIT]):>8} "
                     f"{ratio(g[case][REFERENCE], g['c'][REFERENCE]):>10}")
    retr = {case: {impl: [s["retransmits"] for s in bench.samples[case][impl]] for impl in IMPLS} for case in CASES}
    lines.append("retransmits (sender, per test): " + "; ".join(
        f"({case}) netkit {retr[case][NETKIT]} reference {retr[case][REFERENCE]}" for case in CASES))
    doc = {"gbps_median": g,
           "ratios": {"a/c": {i: g["a"][i] / g["c"][i] for i in IMPLS},
                      "b/c": {i: g["b"][i] / g["c"][i] for i in IMPLS},
                      "netkit/reference": {c: g[c][NETKIT] / g[c][REFERENCE] for c in CASES}},
           "samples": bench.samples}
    return "\n".join(lines), doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5, help="length of each iperf3 test (default 5)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every test this often, report medians (default 1)")
    ap.add_argument("--json", metavar="FILE", help="also write every test's figures here")
    args = ap.parse_args()
    if args.seconds < 1 or args.rounds < 1:
        ap.error("--seconds and --rounds must be at least 1")
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces)")
    for name in PLUGINS[REFERENCE]:
        if not os.access(os.path.join(REFERENCE_BIN, name), os.X_OK):
            ap.error(f"reference plugin {REFERENCE_BIN}/{name} missing (apt-get install containernetworking-plugins)")

    cmdline = shlex.join(sys.orig_argv)
    print(f"command: {cmdline}")
    bench = Bench(args.seconds, args.rounds)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    error: str | None = None
    try:
        iperf3 = ensure_iperf3()
        version = run([iperf3, "--version"]).stdout.splitlines()[0].strip()
        bench.setup()
        for impl in IMPLS:
            box = bench.boxes[impl]
            print(f"{impl}: {'+'.join(PLUGINS[impl])} in sandbox host {box.host}, container {box.container} "
                  f"({box.container_ip}), machine X {box.x}"
                  + (f"; NETKIT_FIREWALL_BACKEND={NETKIT_FIREWALL}" if impl == NETKIT else "; iptables"),
                  flush=True)
        bench.run(iperf3)
        for box in bench.boxes.values():                # DEL in the normal path, so its failure shows
            box.detach()
    except KeyboardInterrupt:
        error = "interrupted"
    except (BenchError, subprocess.TimeoutExpired) as exc:
        error = str(exc)
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)   # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            bench.teardown()
        finally:
            signal.signal(signal.SIGINT, old)

    for problem in bench.cleanup_problems:
        print(f"CLEANUP PROBLEM: {problem}", file=sys.stderr)
    if error is not None:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1

    text, doc = report(bench)
    print()
    print(f"{version}; kernel {platform.release()}, {os.cpu_count()} CPUs; client, server and forwarding "
          f"share these CPUs")
    print(text)
    if args.json:
        doc = {"command": cmdline, "seconds": args.seconds, "rounds": args.rounds, "iperf3": version,
               "machine": {"kernel": platform.release(), "cpus": os.cpu_count()},
               "plugins": {i: list(PLUGINS[i]) for i in IMPLS}, "netkit_firewall_backend": NETKIT_FIREWALL,
               "topology": {"host_uplink": HOST_UPLINK, "x": X_UPLINK, "container_subnet": SUBNET,
                            "host_port": HOST_PORT, "container_port": CONTAINER_PORT},
               **doc, "cleanup_problems": bench.cleanup_problems}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if bench.cleanup_problems else 0


if __name__ == "__main__":
    sys.exit(main())
