#!/usr/bin/env python3
"""Scale: concurrent attachments, ADD latency with many attachments present, peak memory.

Run as root from the repository root::

    .venv/bin/python bench/scale.py [--attachments 500] [--json out.json]

(a) ``--concurrency`` (32) concurrent bridge+ipam+portmap ADDs, then as many concurrent DELs, each
    with its own hostPort: netkit through its warm agent, netkit in-process, the reference plugins;
    wall time; distinct addresses and nothing left after the DELs are checked.
(b) ADD (and DEL) latency of one more attachment, median of ``--samples`` (20), with 0 and with
    ``--attachments`` (500) attachments already present, each with a published port: netkit through
    the agent on the nftables and the iptables backend, and the reference plugins.
(c) Peak RSS of the agent process (VmHWM) and of single plugin execs (GNU time's %M).
(d) The agent over time: ``--requests`` (1500) STATUS requests straight through the client for
    warm-up, then as many again, with its VmRSS and threads before and after the second batch; then
    ``--cycles`` (300) attachment ADD/DEL cycles through it, the cycle time of the first 100 against
    the last 100 and its VmRSS every 100 cycles.  (Figures the tests once bounded: the agent's RSS
    in tests/faults/test_agent_faults.py and the NETKIT_FULL soak's RSS and slow-down in
    tests/faults/test_soak.py; a loaded machine moves them, so the tests now check what load cannot.)

Every sandbox is a throwaway network namespace made for the run (netkit and reference never share
one), containers are namespaces of their own, and no traffic is sent.  The agent runs on a socket in
the run's temp dir.  Everything is deleted and the agent stopped in a ``finally`` (Ctrl-C and SIGTERM
included).  See bench/README.md.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from benchlib import AgentOfTheRun, BenchError, ip, netns_names, root_links, summary  # noqa: E402 - bench/ is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from netkit.launch import install as nk_install  # noqa: E402

REFERENCE_BIN = "/usr/lib/cni"
AGENT, INPROC, REFERENCE = "netkit-agent", "netkit-in-process", "reference"
NO_AGENT = "/nonexistent"            # NETKIT_AGENT_SOCKET for in-process: no agent listens there
HOSTPORT_BASE = 30000                # every sandbox hands out hostPorts from here up, never one twice
CONTAINER_PORT = 80
EXEC_TIMEOUT_S = 120                 # a ceiling, not an expectation
# (b)'s samples: the chain sums, then each exec on its own
SAMPLE_KEYS = ("add_ms", "del_ms", "bridge_add_ms", "portmap_add_ms", "portmap_del_ms", "bridge_del_ms")
GNU_TIME = "/usr/bin/time"



@dataclass
class Exec:
    ms: float
    code: int
    out: bytes
    err: bytes
    maxrss_kib: int = 0    # with rss=True: GNU time's %M, the peak RSS of `ip netns exec` + the plugin


def run_exec(host: str, argv: list[str], env: dict[str, str], stdin: bytes, rss: bool = False) -> Exec:
    """``ip netns exec HOST argv``: wall time from spawn to exit and its outputs.

    With ``rss``, the command runs under ``/usr/bin/time -f %M`` and its peak RSS comes back too.
    (Not wait4 on our own child: Python spawns with vfork, so a child's ru_maxrss starts at this
    script's own RSS; time(1) is a small C program, so the child it forks starts small.)
    """
    full = ["ip", "netns", "exec", host, *argv]
    rss_file = None
    if rss:
        fd, rss_file = tempfile.mkstemp(prefix="rss-")
        os.close(fd)
        full = [GNU_TIME, "-f", "%M", "-o", rss_file, *full]
    try:
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            out, err = proc.communicate(stdin, timeout=EXEC_TIMEOUT_S)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        t1 = time.perf_counter_ns()
        maxrss = 0
        if rss_file is not None:
            with open(rss_file) as fh:
                lines = fh.read().split()
            if not lines or not lines[-1].isdigit():
                raise BenchError(f"{GNU_TIME} gave no %M for {argv}: {lines!r}")
            maxrss = int(lines[-1])
        return Exec((t1 - t0) / 1e6, proc.returncode, out, err, maxrss)
    finally:
        if rss_file is not None:
            os.unlink(rss_file)


class Sandbox:
    """A sandbox host namespace holding one bridge network of one implementation (and firewall backend)."""

    def __init__(self, run: "Scale", key: str, impl: str, firewall: str, subnet_octet: int, label: str) -> None:
        self.run = run
        self.key = key
        self.impl = impl
        self.netkit = impl != REFERENCE
        self.firewall = firewall                      # NETKIT_FIREWALL_BACKEND; "" for the reference
        self.label = label
        self.host = f"{run.tag}-{key}"
        self.bridge = f"{run.tag}{key}"               # 9 + 2 chars: within IFNAMSIZ
        self.subnet = f"10.{subnet_octet}.0.0/16"
        self.prefix = f"10.{subnet_octet}."
        self.network = f"scale-{key}"
        self.data_dir = os.path.join(run.tmp, "data", key)
        self._next_port = HOSTPORT_BASE
        self._count = 0

    # ---- bookkeeping ----------------------------------------------------------------------------
    def next_port(self) -> int:
        self._next_port += 1
        if self._next_port > 65535:
            raise BenchError(f"{self.host}: out of host ports")
        return self._next_port

    def new_containers(self, n: int) -> list[str]:
        names = [f"{self.host}c{self._count + i}" for i in range(n)]
        self._count += n
        self.run.netns_add_many(names)
        return names

    # ---- plugin calls ---------------------------------------------------------------------------
    def exe(self, name: str) -> str:
        return os.path.join(self.run.bin_dir if name.startswith("netkit-") else REFERENCE_BIN, name)

    def env(self, command: str, container: str) -> dict[str, str]:
        env = {"CNI_COMMAND": command, "CNI_PATH": f"{self.run.bin_dir}:{REFERENCE_BIN}",
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "CNI_NETNS": f"/run/netns/{container}", "CNI_IFNAME": "eth0", "CNI_CONTAINERID": container}
        if self.netkit:   # never a machine-wide agent: ours, or none
            env["NETKIT_AGENT_SOCKET"] = self.run.agent_sock if self.impl == AGENT else NO_AGENT
            env["NETKIT_FIREWALL_BACKEND"] = self.firewall
        return env

    def bridge_conf(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0", "name": self.network,
            "type": "netkit-bridge" if self.netkit else "bridge",
            "bridge": self.bridge, "isGateway": True,
            "ipam": {"type": "netkit-ipam" if self.netkit else "host-local",
                     "ranges": [[{"subnet": self.subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": self.data_dir},
        }

    def portmap_conf(self, host_port: int, prev: dict[str, Any]) -> dict[str, Any]:
        # "protocol" spelled out: the reference portmap requires it.
        return {"cniVersion": "1.0.0", "name": self.network, "type": "netkit-portmap" if self.netkit else "portmap",
                "capabilities": {"portMappings": True},
                "runtimeConfig": {"portMappings": [{"hostPort": host_port, "containerPort": CONTAINER_PORT,
                                                    "protocol": "tcp"}]},
                "prevResult": prev}

    def call(self, command: str, conf: dict[str, Any], container: str, rss: bool = False) -> Exec:
        return run_exec(self.host, [self.exe(conf["type"])], self.env(command, container), json.dumps(conf).encode(),
                        rss)

    def chain_add(self, container: str, host_port: int, rss: bool = False) -> tuple[float, dict[str, Any], list[Exec]]:
        """bridge ADD, then portmap ADD with the bridge's result as prevResult (as libcni runs a conflist)."""
        bridge_conf = self.bridge_conf()
        e1 = self.call("ADD", bridge_conf, container, rss)
        try:
            prev = json.loads(e1.out)
        except ValueError:
            prev = {}
        addrs = [i.get("address", "") for i in prev.get("ips", [])] if isinstance(prev, dict) else []
        if e1.code != 0 or not any(a.startswith(self.prefix) for a in addrs):
            raise BenchError(f"{self.label}: bridge ADD in {container} failed (exit {e1.code}): "
                             f"stdout {e1.out[:400]!r} stderr {e1.err[:400]!r}")
        e2 = self.call("ADD", self.portmap_conf(host_port, prev), container, rss)
        try:
            result = json.loads(e2.out)
        except ValueError:
            result = {}
        if e2.code != 0 or not isinstance(result, dict) or result.get("ips") != prev["ips"]:
            raise BenchError(f"{self.label}: portmap ADD in {container} failed (exit {e2.code}): "
                             f"stdout {e2.out[:400]!r} stderr {e2.err[:400]!r}")
        return e1.ms + e2.ms, result, [e1, e2]

    def chain_del(self, container: str, host_port: int, prev: dict[str, Any],
                  rss: bool = False) -> tuple[float, list[Exec]]:
        """portmap DEL, then bridge DEL, both with the chain's result as prevResult."""
        e1 = self.call("DEL", self.portmap_conf(host_port, prev), container, rss)
        if e1.code != 0:
            raise BenchError(f"{self.label}: portmap DEL in {container} failed (exit {e1.code}): "
                             f"stdout {e1.out[:400]!r} stderr {e1.err[:400]!r}")
        bridge_conf = self.bridge_conf()
        bridge_conf["prevResult"] = prev
        e2 = self.call("DEL", bridge_conf, container, rss)
        if e2.code != 0:
            raise BenchError(f"{self.label}: bridge DEL in {container} failed (exit {e2.code}): "
                             f"stdout {e2.out[:400]!r} stderr {e2.err[:400]!r}")
        return e1.ms + e2.ms, [e1, e2]

    # ---- what the sandbox holds (read only, never timed) ----------------------------------------
    def in_host(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return ip("netns", "exec", self.host, *argv)

    def nat_text(self) -> str:
        """The host's NAT rules as the implementation's own tool lists them."""
        if self.impl == REFERENCE:
            proc = self.in_host("iptables-save", "-t", "nat")            # iptables-nft on Debian 12
        elif self.firewall == "iptables":
            proc = self.in_host("iptables-legacy-save", "-t", "nat")     # netkit's iptables backend: legacy
        else:
            proc = self.in_host("nft", "list", "table", "inet", "netkit")
            if proc.returncode != 0 and "No such file" in proc.stderr:
                return ""                                                # no table yet
        if proc.returncode != 0:
            raise BenchError(f"listing the NAT rules of {self.host} failed: {proc.stderr.strip()}")
        return proc.stdout

    def published_ports(self) -> set[int]:
        """Host ports with a DNAT (hostPorts are >= HOSTPORT_BASE; the containerPort is not)."""
        pattern = r"dport (\d+)\b"        # nft "tcp dport P", iptables "--dport P"
        return {int(p) for p in re.findall(pattern, self.nat_text()) if int(p) > HOSTPORT_BASE}

    def attachment_chains(self) -> list[str]:
        """Per-attachment firewall chains (netkit NK-D-*/NK-M-*, reference CNI-DN-*)."""
        if self.impl == REFERENCE or self.firewall == "iptables":
            prefixes = ("CNI-DN-",) if self.impl == REFERENCE else ("NK-D-", "NK-M-")
            return sorted(line[1:].split()[0] for line in self.nat_text().splitlines()
                          if line.startswith(":") and line[1:].startswith(prefixes))
        proc = self.in_host("nft", "-j", "list", "table", "inet", "netkit")
        objs = json.loads(proc.stdout or '{"nftables": []}')["nftables"] if proc.returncode == 0 else []
        return sorted(o["chain"]["name"] for o in objs
                      if "chain" in o and o["chain"]["name"].startswith(("NK-D-", "NK-M-")))

    def links(self) -> list[str]:
        return sorted(link["ifname"] for link in json.loads(self.in_host("ip", "-j", "link", "show").stdout or "[]"))

    def leases(self) -> list[str]:
        d = os.path.join(self.data_dir, self.network)
        return sorted(n for n in os.listdir(d) if n[0].isdigit()) if os.path.isdir(d) else []

    def nft_tables(self) -> list[str]:
        return sorted(line.strip() for line in self.in_host("nft", "list", "tables").stdout.splitlines() if line.strip())

    def leftovers(self) -> list[str]:
        """After every attachment's DEL: nothing of any attachment left in the host or the data dir."""
        problems = []
        if self.leases():
            problems.append(f"leases left: {self.leases()[:5]}")
        if self.links() != sorted(["lo", self.bridge]):
            problems.append(f"links {self.links()[:8]}, expected only lo and {self.bridge}")
        if self.attachment_chains():
            problems.append(f"per-attachment chains left: {self.attachment_chains()[:5]}")
        if self.published_ports():
            problems.append(f"DNAT left for hostPorts {sorted(self.published_ports())[:5]}")
        tables = self.nft_tables()     # netkit's tables are all named netkit; the reference's never
        foreign = [t for t in tables if t.endswith(" netkit") != self.netkit]
        if foreign:
            problems.append(f"the other implementation's nft tables: {foreign}")
        return [f"{self.label} ({self.host}): {p}" for p in problems]


class Scale(AgentOfTheRun):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        while True:                                        # prefix of every namespace and bridge we make
            self.tag = f"nks{secrets.token_hex(3)}"
            if not any(n.startswith(self.tag) for n in netns_names()):
                break
        self.tmp = ""
        self.bin_dir = ""
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_sock = ""
        self.agent_log = ""
        self.live_netns: set[str] = set()
        self.hosts: list[str] = []
        self.cleanup_problems: list[str] = []
        self.doc: dict[str, Any] = {}                      # everything measured, for printing and --json

    # ---- namespaces -------------------------------------------------------------------------------
    def netns_add_many(self, names: list[str]) -> None:
        if not names:
            return
        proc = subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names),
                              capture_output=True, text=True, timeout=600)
        have = netns_names()
        self.live_netns |= {n for n in names if n in have}
        missing = [n for n in names if n not in have]
        if proc.returncode != 0 or missing:
            raise BenchError(f"ip netns add failed for {missing[:3]}: {proc.stderr.strip()[:300]}")

    def netns_del_many(self, names: list[str]) -> None:
        names = [n for n in names if n in self.live_netns]
        if not names:
            return
        proc = subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"netns del {n}\n" for n in names),
                              capture_output=True, text=True, timeout=600)
        have = netns_names()
        self.live_netns -= {n for n in names if n not in have}
        left = [n for n in names if n in have]
        if left:
            self.cleanup_problems.append(f"ip netns del failed for {left[:3]}: {proc.stderr.strip()[:300]}")

    def containers_of(self, sb: Sandbox) -> list[str]:
        return sorted(n for n in self.live_netns if n.startswith(sb.host + "c"))

    # ---- the agent ----------------------------------------------------------------------------
    def agent_status(self) -> dict[str, int]:
        """VmHWM, VmRSS (KiB) and threads of the agent process, from /proc/PID/status."""
        assert self.agent is not None
        out = {}
        with open(f"/proc/{self.agent.pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "Threads"):
                    out[key] = int(value.split()[0])
        return out

    # ---- setup / teardown -------------------------------------------------------------------------
    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="netkit-scale-")
        self.bin_dir = os.path.join(self.tmp, "bin")
        nk_install.install(bin_dir=self.bin_dir, conf_dir=os.path.join(self.tmp, "net.d"))
        self.start_agent()
        self.doc["agent_at_start"] = self.agent_status()

    def sandbox(self, key: str, impl: str, firewall: str, octet: int, label: str) -> Sandbox:
        sb = Sandbox(self, key, impl, firewall, octet, label)
        os.makedirs(sb.data_dir)
        self.hosts.append(sb.host)
        self.netns_add_many([sb.host])
        proc = sb.in_host("ip", "link", "set", "lo", "up")
        if proc.returncode != 0:
            raise BenchError(f"bringing lo up in {sb.host} failed: {proc.stderr.strip()}")
        # One attachment up and down: makes the bridge and the firewall tables, warms the page cache.
        (c,) = sb.new_containers(1)
        port = sb.next_port()
        _, res, _ = sb.chain_add(c, port)
        sb.chain_del(c, port, res)
        self.netns_del_many([c])
        return sb

    def teardown(self) -> None:
        self.stop_agent()
        # Containers first (their veths go with them), then the hosts (bridges, rules, leftovers).
        self.netns_del_many(sorted(n for n in self.live_netns if n not in self.hosts))
        self.netns_del_many([h for h in self.hosts if h in self.live_netns])
        # Anything else carrying our random tag is ours too (e.g. made just as Ctrl-C arrived).
        self.live_netns |= {n for n in netns_names() if n.startswith(self.tag + "-")}
        self.netns_del_many(sorted(self.live_netns))
        left = sorted(n for n in netns_names() if n.startswith(self.tag))
        if left:
            self.cleanup_problems.append(f"namespaces still present after cleanup: {', '.join(left[:10])}")
        if self.agent is not None and os.path.exists(f"/proc/{self.agent.pid}"):
            self.cleanup_problems.append(f"the agent (pid {self.agent.pid}) is still running")
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def concurrently(fn: Callable[[int], Any], n: int, workers: int) -> tuple[float, list[Any]]:
        """fn(0..n-1) on ``workers`` threads; wall seconds from the first submit to the last result."""
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        try:
            t0 = time.perf_counter()
            futures = [pool.submit(fn, i) for i in range(n)]
            concurrent.futures.wait(futures)
            wall = time.perf_counter() - t0
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise BenchError(f"{len(errors)} of {n} failed; first: {errors[0]}")
        return wall, [f.result() for f in futures]

    @staticmethod
    def address_of(result: dict[str, Any]) -> str:
        return str(result["ips"][0]["address"]).split("/")[0]

    # ---- (a) concurrent ADDs, then concurrent DELs --------------------------------------------------
    def part_a(self) -> None:
        t0 = time.monotonic()
        n, rounds = self.args.concurrency, self.args.rounds
        sbs = [self.sandbox("aa", AGENT, "nftables", 81, "netkit agent"),
               self.sandbox("ai", INPROC, "nftables", 82, "netkit in-process"),
               self.sandbox("ar", REFERENCE, "", 83, "reference")]
        res: dict[str, dict[str, list[float]]] = {sb.label: {"add_wall_s": [], "del_wall_s": [], "add_each_ms": [],
                                                              "del_each_ms": [], "agent_cpu_s": []} for sb in sbs}
        for r in range(rounds):
            k = r % len(sbs)
            for sb in sbs[k:] + sbs[:k]:      # rotate who goes first
                print(f"\r  (a) round {r + 1}/{rounds}: {sb.label:<20}", end="", file=sys.stderr, flush=True)
                containers = sb.new_containers(n)
                ports = [sb.next_port() for _ in containers]
                self.check_agent()
                cpu0 = self.agent_cpu()
                wall_add, adds = self.concurrently(lambda i: sb.chain_add(containers[i], ports[i]), n, n)
                addrs = [self.address_of(res_) for _, res_, _ in adds]
                if len(set(addrs)) != n:
                    dup = sorted({a for a in addrs if addrs.count(a) > 1})
                    raise BenchError(f"{sb.label}: {n} concurrent ADDs gave {len(set(addrs))} distinct addresses "
                                     f"(duplicates {dup[:5]})")
                if sb.published_ports() != set(ports):
                    raise BenchError(f"{sb.label}: after {n} ADDs the DNATs are for {len(sb.published_ports())} "
                                     f"hostPorts, expected {n}")
                veths = [x for x in sb.links() if x not in ("lo", sb.bridge)]
                if len(veths) != n:
                    raise BenchError(f"{sb.label}: {len(veths)} host-side veths after {n} ADDs")
                wall_del, dels = self.concurrently(
                    lambda i: sb.chain_del(containers[i], ports[i], adds[i][1]), n, n)
                self.check_agent()
                cpu = self.agent_cpu() - cpu0
                problems = sb.leftovers()
                if problems:
                    raise BenchError("; ".join(problems))
                self.netns_del_many(containers)
                row = res[sb.label]
                row["add_wall_s"].append(wall_add)
                row["del_wall_s"].append(wall_del)
                row["add_each_ms"] += [ms for ms, _, _ in adds]
                row["del_each_ms"] += [ms for ms, _ in dels]
                row["agent_cpu_s"].append(cpu)
                if sb.impl == AGENT and cpu <= 0:
                    raise BenchError("the agent used no CPU time for the agent batch: did the launchers fall back?")
        print(file=sys.stderr)
        self.doc["a"] = res
        self.doc["a_seconds"] = time.monotonic() - t0
        self.doc["agent_after_a"] = self.agent_status()
        self.doc["a_sandboxes"] = {sb.label: sb.host for sb in sbs}
        if not os.access(GNU_TIME, os.X_OK):
            return
        # (c) one more attachment per sandbox, sequential: peak RSS of each plugin exec.
        rss: dict[str, dict[str, int]] = {}
        for sb in sbs:
            (c,) = sb.new_containers(1)
            port = sb.next_port()
            _, result, e_add = sb.chain_add(c, port, rss=True)
            _, e_del = sb.chain_del(c, port, result, rss=True)
            self.netns_del_many([c])
            rss[sb.label] = {"bridge ADD": e_add[0].maxrss_kib, "portmap ADD": e_add[1].maxrss_kib,
                             "portmap DEL": e_del[0].maxrss_kib, "bridge DEL": e_del[1].maxrss_kib}
            problems = sb.leftovers()
            if problems:
                raise BenchError("; ".join(problems))
        self.doc["exec_maxrss_kib"] = rss

    # ---- (d) the agent's resident memory per request -----------------------------------------------
    def part_d(self) -> None:
        """STATUS requests through the agent client (no exec), each from a sandbox host's namespace."""
        from netkit.agent import client, protocol
        from netkit.net import netns

        t0 = time.monotonic()
        n = self.args.requests
        sb = self.sandbox("dr", AGENT, "nftables", 87, "netkit agent, STATUS requests")
        conf = json.dumps({"cniVersion": "1.1.0", "name": sb.network, "type": "netkit-portmap"}).encode()
        env = {"CNI_COMMAND": "STATUS", "CNI_PATH": f"{self.bin_dir}:{REFERENCE_BIN}",
               protocol.ENV_SOCKET: self.agent_sock}

        def serve(count: int, phase: str) -> None:
            with netns.entered(f"/run/netns/{sb.host}"):  # the client hands the agent its thread's namespace
                for i in range(count):
                    if i % 100 == 0:
                        print(f"\r  (d) {phase}: {i}/{count}   ", end="", file=sys.stderr, flush=True)
                    got = client.forward("netkit-portmap", env, conf)
                    if got != (b"", 0):
                        raise BenchError(f"(d) STATUS through the agent answered {got!r}")
            print(file=sys.stderr)

        self.check_agent()
        serve(n, "warm-up")
        before = self.agent_status()
        serve(n, "measured")
        after = self.agent_status()
        self.check_agent()
        # Attachment cycles: one container at a time, ADD then DEL, as the soak test runs them.
        ms: list[float] = []
        rss = [after["VmRSS"]]
        for i in range(self.args.cycles):
            if i % 10 == 0:
                print(f"\r  (d) cycles: {i}/{self.args.cycles}   ", end="", file=sys.stderr, flush=True)
            (c,) = sb.new_containers(1)
            port = sb.next_port()
            ms_add, result, _ = sb.chain_add(c, port)
            ms_del, _ = sb.chain_del(c, port, result)
            self.netns_del_many([c])
            ms.append(ms_add + ms_del)
            if (i + 1) % 100 == 0:
                self.check_agent()
                rss.append(self.agent_status()["VmRSS"])
        print(file=sys.stderr)
        problems = sb.leftovers()
        if problems:
            raise BenchError("; ".join(problems))
        self.doc["d"] = {"requests": n, "before": before, "after": after, "cycle_ms": ms, "cycle_rss_kib": rss}
        self.doc["agent_after_d"] = self.agent_status()
        self.doc["d_seconds"] = time.monotonic() - t0

    # ---- (b) ADD latency with 0 and N attachments present -----------------------------------------
    def samples(self, sbs: list[Sandbox], phase: str) -> dict[str, dict[str, list[float]]]:
        out: dict[str, dict[str, list[float]]] = {sb.label: {k: [] for k in SAMPLE_KEYS} for sb in sbs}
        for s in range(self.args.samples):
            print(f"\r  (b) {phase}: sample {s + 1}/{self.args.samples}   ", end="", file=sys.stderr, flush=True)
            k = s % len(sbs)
            for sb in sbs[k:] + sbs[:k]:
                self.check_agent()
                (c,) = sb.new_containers(1)
                port = sb.next_port()
                ms_add, result, e_add = sb.chain_add(c, port)
                if port not in sb.published_ports():                     # not timed
                    raise BenchError(f"{sb.label}: ADD exited 0 but no DNAT for hostPort {port}")
                ms_del, e_del = sb.chain_del(c, port, result)
                if port in sb.published_ports():
                    raise BenchError(f"{sb.label}: DEL exited 0 but the DNAT for hostPort {port} is still there")
                self.netns_del_many([c])
                for key, ms in zip(SAMPLE_KEYS, (ms_add, ms_del, e_add[0].ms, e_add[1].ms, e_del[0].ms, e_del[1].ms)):
                    out[sb.label][key].append(ms)
        print(file=sys.stderr)
        return out

    def populate(self, sb: Sandbox, n: int) -> tuple[float, set[int]]:
        """n attachments, each with a published port, ``--populate-concurrency`` at a time."""
        containers = sb.new_containers(n)
        ports = [sb.next_port() for _ in containers]
        done = [0]
        lock = threading.Lock()

        def one(i: int) -> str:
            _, result, _ = sb.chain_add(containers[i], ports[i])
            with lock:
                done[0] += 1
                if done[0] % 25 == 0 or done[0] == n:
                    print(f"\r  (b) populating {sb.label}: {done[0]}/{n}   ", end="", file=sys.stderr, flush=True)
            return self.address_of(result)

        self.check_agent()
        wall, addrs = self.concurrently(one, n, self.args.populate_concurrency)
        print(file=sys.stderr)
        self.check_agent()
        if len(set(addrs)) != n:
            raise BenchError(f"{sb.label}: populating {n} attachments gave {len(set(addrs))} distinct addresses")
        if sb.published_ports() != set(ports):
            raise BenchError(f"{sb.label}: after populating, DNATs for {len(sb.published_ports())} hostPorts, expected {n}")
        return wall, set(ports)

    def part_b(self) -> None:
        t0 = time.monotonic()
        n = self.args.attachments
        sbs = [self.sandbox("bn", AGENT, "nftables", 84, "netkit agent, nftables")]
        if not self.args.no_iptables:
            sbs.append(self.sandbox("bi", AGENT, "iptables", 85, "netkit agent, iptables"))
        sbs.append(self.sandbox("br", REFERENCE, "", 86, "reference"))
        at0 = self.samples(sbs, "0 present")
        populate_s: dict[str, float] = {}
        present: dict[str, set[int]] = {}
        for sb in sbs:
            populate_s[sb.label], present[sb.label] = self.populate(sb, n)
        atn = self.samples(sbs, f"{n} present")
        for sb in sbs:        # the sampled ADD/DELs must have left the N alone
            if sb.published_ports() != present[sb.label]:
                raise BenchError(f"{sb.label}: the {n} populated DNATs changed during the samples")
            if len(sb.leases()) != n:
                raise BenchError(f"{sb.label}: {len(sb.leases())} leases with {n} attachments present")
        self.doc["b"] = {"attachments": n, "at_0": at0, "at_n": atn, "populate_s": populate_s,
                         "sandboxes": {sb.label: sb.host for sb in sbs}}
        self.doc["b_seconds"] = time.monotonic() - t0
        self.doc["agent_after_b"] = self.agent_status()


# ---- output ---------------------------------------------------------------------------------------
def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def print_a(doc: dict[str, Any], n: int, rounds: int) -> None:
    a = doc["a"]
    ref = a["reference"]
    ref_add, ref_del = summary(ref["add_wall_s"])["median"], summary(ref["del_wall_s"])["median"]
    print(f"(a) {n} concurrent ADDs, then {n} concurrent DELs (bridge+ipam+portmap, one hostPort each); "
          f"{rounds} round{'s' if rounds != 1 else ''}; part (a) took {doc['a_seconds']:.0f} s")
    head = (f"{'variant':<20} {'ADD wall s':>10} {'min':>6} {'max':>6} {'ratio':>6} {'DEL wall s':>10} {'min':>6} "
            f"{'max':>6} {'ratio':>6}   {'ADD each ms med':>15} {'p95':>6} {'DEL each ms med':>15} {'p95':>6}")
    print(head)
    print("-" * len(head))
    for label, row in a.items():
        ad, de = summary(row["add_wall_s"]), summary(row["del_wall_s"])
        ae, dl = summary(row["add_each_ms"]), summary(row["del_each_ms"])
        print(f"{label:<20} {ad['median']:>10.2f} {ad['min']:>6.2f} {ad['max']:>6.2f} {ad['median'] / ref_add:>6.2f} "
              f"{de['median']:>10.2f} {de['min']:>6.2f} {de['max']:>6.2f} {de['median'] / ref_del:>6.2f}   "
              f"{ae['median']:>15.0f} {ae['p95']:>6.0f} {dl['median']:>15.0f} {dl['p95']:>6.0f}")
    print(f"wall s = median over the rounds, from the first submit to the last exit; ratio = / reference. "
          f"Each ms = one attachment's\nbridge+portmap execs under that concurrency (all rounds pooled). "
          f"Checked per batch: {n} distinct addresses, {n} DNATs\nand veths after the ADDs; after the DELs no "
          f"lease, veth, per-attachment chain or DNAT left.")


def print_b(doc: dict[str, Any], samples: int) -> None:
    b = doc["b"]
    n = b["attachments"]
    print(f"(b) one more bridge+ipam+portmap attachment with 0 and with {n} attachments present (each with a "
          f"published port);\nmedian and p95 of {samples}, ms; part (b) took {doc['b_seconds']:.0f} s")
    head = (f"{'variant':<24} {'ADD@0':>7} {'p95':>6} {f'ADD@{n}':>8} {'p95':>6} {f'{n}/0':>6}   "
            f"{'DEL@0':>7} {f'DEL@{n}':>8} {f'{n}/0':>6}   {f'populate {n} s':>14}")
    print(head)
    print("-" * len(head))
    for label in b["at_0"]:
        a0, an = summary(b["at_0"][label]["add_ms"]), summary(b["at_n"][label]["add_ms"])
        d0, dn = summary(b["at_0"][label]["del_ms"]), summary(b["at_n"][label]["del_ms"])
        print(f"{label:<24} {a0['median']:>7.1f} {a0['p95']:>6.1f} {an['median']:>8.1f} {an['p95']:>6.1f} "
              f"{an['median'] / a0['median']:>6.2f}   {d0['median']:>7.1f} {dn['median']:>8.1f} "
              f"{dn['median'] / d0['median']:>6.2f}   {b['populate_s'][label]:>14.1f}")
    print("ADD = bridge exec (incl. its IPAM delegate) + portmap exec; DEL = portmap + bridge; each sample a fresh container,")
    print(f"deleted again, so {n} stay present. {n}/0 = ratio of the medians. Populated at concurrency "
          f"{doc['populate_concurrency']}, netkit through the agent.")
    print()
    print(f"the same samples per exec: median ms at 0 -> at {n} present")
    execs = [("bridge ADD", "bridge_add_ms"), ("portmap ADD", "portmap_add_ms"), ("portmap DEL", "portmap_del_ms"),
             ("bridge DEL", "bridge_del_ms")]
    head = f"{'variant':<24}" + "".join(f" {name:>20}" for name, _ in execs)
    print(head)
    print("-" * len(head))
    for label in b["at_0"]:
        cells = [f"{summary(b['at_0'][label][k])['median']:.0f} -> {summary(b['at_n'][label][k])['median']:.0f}"
                 for _, k in execs]
        print(f"{label:<24}" + "".join(f" {c:>20}" for c in cells))


def print_c(doc: dict[str, Any]) -> None:
    print("(c) peak RSS, MiB")
    st = doc["agent_at_start"]
    parts = [f"at start (idle, warm imports) {mib(st['VmHWM'])}"]
    if "agent_after_a" in doc:
        parts.append(f"after (a) {mib(doc['agent_after_a']['VmHWM'])}")
    if "agent_after_b" in doc:
        parts.append(f"after (b) {mib(doc['agent_after_b']['VmHWM'])}")
    print("agent process VmHWM: " + ", ".join(parts))
    last = doc.get("agent_after_d") or doc.get("agent_after_b") or doc.get("agent_after_a") or st
    print(f"agent process at the end: VmRSS {mib(last['VmRSS'])}, {last['Threads']} threads")
    rss = doc.get("exec_maxrss_kib")
    if not rss:
        print(f"(no plugin exec peak RSS: {GNU_TIME} missing, or part (a) not run)")
    else:
        labels = list(rss)
        head = f"{'one plugin exec, peak RSS':<28}" + "".join(f" {lb:>18}" for lb in labels)
        print(head)
        print("-" * len(head))
        for op in next(iter(rss.values())):
            print(f"{op:<28}" + "".join(f" {mib(rss[lb][op]):>18}" for lb in labels))
        print("GNU time's %M (ru_maxrss) of `ip netns exec HOST plugin` (ip execs the plugin in place): the peak of "
              "the plugin\nand of the children it waited for, so in-process and reference `bridge ADD/DEL` include "
              "their IPAM delegate;\nthrough the agent the delegate runs under the agent and the launcher only forwards.")


def print_d(doc: dict[str, Any]) -> None:
    d = doc["d"]
    n, before, after = d["requests"], d["before"], d["after"]
    grown = after["VmRSS"] - before["VmRSS"]
    print(f"(d) agent VmRSS over {n} STATUS requests after {n} for warm-up: {before['VmRSS']} -> {after['VmRSS']} KiB, "
          f"{grown:+d} KiB ({grown * 1000 / n:+.0f} KiB per 1,000 requests); threads {before['Threads']} -> "
          f"{after['Threads']}; part (d) took {doc['d_seconds']:.0f} s")
    print("A request that leaked (a thread per request once cost 1-4 KiB each) grows the measured batch as much as "
          "the warm-up;\nnew pool workers under load add ~45 KiB each (glibc arenas capped).")
    ms = d["cycle_ms"]
    if ms:
        w = min(100, max(1, len(ms) // 2))
        first, last = summary(ms[:w])["median"], summary(ms[-w:])["median"]
        print(f"{len(ms)} ADD/DEL cycles (bridge+ipam+portmap through the agent, one container at a time): median of the "
              f"first {w} {first:.0f} ms, last {w} {last:.0f} ms ({last / first:.2f}x); agent VmRSS every 100 cycles "
              f"{d['cycle_rss_kib']} KiB")


def ensure_gnu_time() -> None:
    """GNU time for (c)'s per-exec peak RSS; installed with apt-get (argument lists only) if missing."""
    if os.access(GNU_TIME, os.X_OK):
        return
    print(f"{GNU_TIME} not found: apt-get install -y time", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(["apt-get", "install", "-y", "time"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print("apt-get install failed; apt-get update, then once more", flush=True)
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        subprocess.run(["apt-get", "install", "-y", "time"], env=env, capture_output=True, text=True)
    if not os.access(GNU_TIME, os.X_OK):
        print(f"still no {GNU_TIME}: the per-exec peak RSS table is left out", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=32, help="(a): attachments ADDed (then DELed) at once (32)")
    ap.add_argument("--rounds", type=int, default=3, help="(a): batches per variant (3)")
    ap.add_argument("--attachments", type=int, default=500, help="(b): attachments present for the 'at N' samples (500)")
    ap.add_argument("--samples", type=int, default=20, help="(b): ADD/DEL samples at 0 and at N (20)")
    ap.add_argument("--populate-concurrency", type=int, default=8, help="(b): concurrency of the populating ADDs (8)")
    ap.add_argument("--no-iptables", action="store_true", help="(b): skip netkit's iptables backend")
    ap.add_argument("--requests", type=int, default=1500, help="(d): STATUS requests for warm-up, then measured (1500)")
    ap.add_argument("--cycles", type=int, default=300, help="(d): ADD/DEL cycles through the agent (300; 0: none)")
    ap.add_argument("--parts", default="abd",
                    help="which of (a), (b), (d) to run, e.g. 'a' (default 'abd'; (c) comes with (a) and (b))")
    ap.add_argument("--json", metavar="FILE", help="also write every sample and figure here")
    args = ap.parse_args()
    if not set(args.parts) <= {"a", "b", "d"} or not args.parts:
        ap.error("--parts takes the letters a, b and d")
    if min(args.concurrency, args.rounds, args.attachments, args.samples, args.populate_concurrency,
           args.requests) < 1:
        ap.error("counts must be at least 1")
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces)")
    for name in ("bridge", "host-local", "portmap"):
        if not os.access(os.path.join(REFERENCE_BIN, name), os.X_OK):
            ap.error(f"reference plugin {REFERENCE_BIN}/{name} missing (apt-get install containernetworking-plugins)")
    for tool in ("nft", "iptables-save", "iptables-legacy-save"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found (apt-get install nftables iptables)")

    cmdline = shlex.join(sys.orig_argv)
    print(f"command: {cmdline}")
    if "a" in args.parts:
        ensure_gnu_time()
    root_bridges_before = {n for n, kind in root_links().items() if kind == "bridge"}
    run = Scale(args)
    run.doc.update({"command": cmdline, "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                                                   "python": platform.python_version()},
                    "populate_concurrency": args.populate_concurrency})

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    error: str | None = None
    t0 = time.monotonic()
    try:
        run.setup()
        print(f"namespaces {run.tag}-*, agent pid {run.agent.pid if run.agent else '?'} on {run.agent_sock}",
              flush=True)
        if "a" in args.parts:
            run.part_a()
        if "b" in args.parts:
            run.part_b()
        if "d" in args.parts:
            run.part_d()
    except KeyboardInterrupt:
        error = "interrupted"
    except BenchError as exc:
        error = str(exc)
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)   # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            run.teardown()
        finally:
            signal.signal(signal.SIGINT, old)

    new_root_bridges = sorted({n for n, kind in root_links().items() if kind == "bridge"} - root_bridges_before)
    if new_root_bridges:
        run.cleanup_problems.append(f"new bridges in the root namespace: {new_root_bridges}")
    ours_in_root = sorted(n for n in root_links() if n.startswith(run.tag))
    if ours_in_root:
        run.cleanup_problems.append(f"links named {run.tag}* in the root namespace: {ours_in_root}")
    for problem in run.cleanup_problems:
        print(f"CLEANUP PROBLEM: {problem}", file=sys.stderr)
    if error is not None:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1

    print()
    print(f"kernel {platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{time.monotonic() - t0:.0f} s in all")
    if "a" in run.doc:
        print()
        print_a(run.doc, args.concurrency, args.rounds)
    if "b" in run.doc:
        print()
        print_b(run.doc, args.samples)
    print()
    print_c(run.doc)
    if "d" in run.doc:
        print()
        print_d(run.doc)

    if args.json:
        run.doc["cleanup_problems"] = run.cleanup_problems
        with open(args.json, "w") as fh:
            json.dump(run.doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if run.cleanup_problems else 0


if __name__ == "__main__":
    sys.exit(main())
