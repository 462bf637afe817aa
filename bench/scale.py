#!/usr/bin/env python3
"""Scale: concurrent attachments, ADD latency with many attachments present, peak memory.

Run as root from the repository root::

    .venv/bin/python bench/scale.py [--attachments 500] [--json out.json]

(a) concurrent bridge+ipam+portmap ADDs, then DELs: netkit through its agent, in-process, reference;
(b) ADD/DEL latency of one more attachment with 0 and with N present, per firewall backend;
(c) peak RSS of the agent and of single plugin execs; (d) the agent's memory over many requests and
attachment cycles.  See bench/README.md.  Not part of the test suite.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.bench import NO_AGENT, REFERENCE_BIN, BenchError, Run, apt_install, machine, main, parser, ruled, summary  # noqa: E402
from harness.cnichain import GNU_TIME, Network  # noqa: E402
from harness.agent import Agent  # noqa: E402
from harness.hostns import Netns  # noqa: E402

AGENT, INPROC, REFERENCE = "netkit-agent", "netkit-in-process", "reference"
HOSTPORT_BASE = 30000                # every sandbox hands out hostPorts from here up, never one twice
# (b)'s samples: the chain sums, then each exec on its own
SAMPLE_KEYS = ("add_ms", "del_ms", "bridge_add_ms", "portmap_add_ms", "portmap_del_ms", "bridge_del_ms")


class Sandbox(Network):
    """A sandbox host namespace holding one bridge network of one implementation (and firewall backend)."""

    port_floor = HOSTPORT_BASE

    def __init__(self, run: "Scale", key: str, impl: str, firewall: str, subnet_octet: int, label: str) -> None:
        super().__init__(f"{run.tag}-{key}", run.bin_dir, impl != REFERENCE, f"scale-{key}", f"{run.tag}{key}",
                         f"10.{subnet_octet}.0.0/16", os.path.join(run.tmp, "data", key),
                         run.agent.path if impl == AGENT else NO_AGENT, firewall, label,
                         cni_version="0.4.0", podman_keys=True)  # podman 4.3's conflist shape (issue 16)
        self.run, self.impl = run, impl
        self._next_port = HOSTPORT_BASE
        self._count = 0

    def attachments(self, n: int) -> tuple[list[str], list[int]]:
        """n new container namespaces, and a hostPort for each no attachment here had before."""
        names = [f"{self.host}c{self._count + i}" for i in range(n)]
        self._count += n
        self.run.ns.add(*names)
        ports = list(range(self._next_port + 1, self._next_port + 1 + n))
        self._next_port += n
        if self._next_port > 65535:
            raise BenchError(f"{self.host}: out of host ports")
        return names, ports

    def cycle(self, rss: bool = False) -> tuple[float, float, list[Any], list[Any], int]:
        """One attachment in a fresh container, ADDed and DELed again: ms of both, their execs, its port."""
        (c,), (port,) = self.attachments(1)
        ms_add, result, e_add = self.chain_add(c, port, rss, checked=True)
        ms_del, e_del = self.chain_del(c, port, result, rss, checked=True)
        self.run.ns.delete(c)
        return ms_add, ms_del, e_add, e_del, port


class Scale(Run):
    prefix = "nks"
    agent: Agent

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.doc: dict[str, Any] = {"machine": machine(), "populate_concurrency": args.populate_concurrency}

    def setup(self) -> None:
        if "a" in self.args.parts:
            if not apt_install("time", lambda: os.access(GNU_TIME, os.X_OK)):
                print(f"still no {GNU_TIME}: the per-exec peak RSS table is left out", flush=True)
        super().setup()
        self.start_agent()
        self.doc["agent_at_start"] = self.agent.status()
        print(f"namespaces {self.tag}-*, agent pid {self.agent.pid} on {self.agent.path}", flush=True)
        self.t0 = time.monotonic()

    def sandbox(self, key: str, impl: str, firewall: str, octet: int, label: str) -> Sandbox:
        sb = Sandbox(self, key, impl, firewall, octet, label)
        self.ns.add(sb.host, lo=True)
        # One attachment up and down: makes the bridge and the firewall tables, warms the page cache.
        sb.cycle()
        return sb

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

    def measure(self) -> None:
        for part in "abd":
            if part in self.args.parts:
                getattr(self, f"part_{part}")()

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
                containers, ports = sb.attachments(n)
                self.agent.check()
                cpu0 = self.agent.cpu_seconds()
                wall_add, adds = self.concurrently(lambda i: sb.chain_add(containers[i], ports[i]), n, n)
                addrs = [self.address_of(res_) for _, res_, _ in adds]
                if len(set(addrs)) != n:
                    dup = sorted({a for a in addrs if addrs.count(a) > 1})
                    raise BenchError(f"{sb.label}: {n} concurrent ADDs gave {len(set(addrs))} distinct addresses "
                                     f"(duplicates {dup[:5]})")
                if sb.published_ports() != set(ports):
                    raise BenchError(f"{sb.label}: after {n} ADDs the DNATs are for {len(sb.published_ports())} "
                                     f"hostPorts, expected {n}")
                veths = [x for x in Netns(sb.host).links() if x not in ("lo", sb.bridge)]
                if len(veths) != n:
                    raise BenchError(f"{sb.label}: {len(veths)} host-side veths after {n} ADDs")
                wall_del, dels = self.concurrently(
                    lambda i: sb.chain_del(containers[i], ports[i], adds[i][1]), n, n)
                self.agent.check()
                cpu = self.agent.cpu_seconds() - cpu0
                sb.must_be_clean()
                self.ns.delete(*containers)
                for key, got in (("add_wall_s", [wall_add]), ("del_wall_s", [wall_del]), ("agent_cpu_s", [cpu]),
                                 ("add_each_ms", [ms for ms, _, _ in adds]), ("del_each_ms", [ms for ms, _ in dels])):
                    res[sb.label][key] += got
                if sb.impl == AGENT and cpu <= 0:
                    raise BenchError("the agent used no CPU time for the agent batch: did the launchers fall back?")
        print(file=sys.stderr)
        self.doc.update(a=res, a_seconds=time.monotonic() - t0, agent_after_a=self.agent.status(),
                        a_sandboxes={sb.label: sb.host for sb in sbs})
        if not os.access(GNU_TIME, os.X_OK):
            return
        # (c) one more attachment per sandbox, sequential: peak RSS of each plugin exec.
        rss: dict[str, dict[str, int]] = {}
        for sb in sbs:
            _, _, e_add, e_del, _ = sb.cycle(rss=True)
            rss[sb.label] = {"bridge ADD": e_add[0].maxrss_kib, "portmap ADD": e_add[1].maxrss_kib,
                             "portmap DEL": e_del[0].maxrss_kib, "bridge DEL": e_del[1].maxrss_kib}
            sb.must_be_clean()
        self.doc["exec_maxrss_kib"] = rss

    # ---- (d) the agent's resident memory per request -----------------------------------------------
    def part_d(self) -> None:
        """STATUS requests through the agent client (no exec), each from a sandbox host's namespace."""
        from netkit.agent import client, protocol
        from netkit.net import netns

        t0 = time.monotonic()
        n = self.args.requests
        sb = self.sandbox("dr", AGENT, "nftables", 87, "netkit agent, STATUS requests")
        conf = json.dumps({"cniVersion": "1.1.0", "name": sb.name, "type": "netkit-portmap"}).encode()
        env = {"CNI_COMMAND": "STATUS", "CNI_PATH": f"{self.bin_dir}:{REFERENCE_BIN}",
               protocol.ENV_SOCKET: self.agent.path}

        def serve(count: int, phase: str) -> None:
            with netns.entered(f"/run/netns/{sb.host}"):  # the client hands the agent its thread's namespace
                for i in range(count):
                    if i % 100 == 0:
                        print(f"\r  (d) {phase}: {i}/{count}   ", end="", file=sys.stderr, flush=True)
                    got = client.forward("netkit-portmap", env, conf)
                    if got != (b"", 0):
                        raise BenchError(f"(d) STATUS through the agent answered {got!r}")
            print(file=sys.stderr)

        self.agent.check()
        serve(n, "warm-up")
        before = self.agent.status()
        serve(n, "measured")
        after = self.agent.status()
        self.agent.check()
        # Attachment cycles: one container at a time, ADD then DEL, as the soak test runs them.
        ms: list[float] = []
        rss = [after["VmRSS"]]
        for i in range(self.args.cycles):
            if i % 10 == 0:
                print(f"\r  (d) cycles: {i}/{self.args.cycles}   ", end="", file=sys.stderr, flush=True)
            ms_add, ms_del, _, _, _ = sb.cycle()
            ms.append(ms_add + ms_del)
            if (i + 1) % 100 == 0:
                self.agent.check()
                rss.append(self.agent.status()["VmRSS"])
        print(file=sys.stderr)
        sb.must_be_clean()
        self.doc.update(d={"requests": n, "before": before, "after": after, "cycle_ms": ms, "cycle_rss_kib": rss},
                        agent_after_d=self.agent.status(), d_seconds=time.monotonic() - t0)

    # ---- (b) ADD latency with 0 and N attachments present -----------------------------------------
    def samples(self, sbs: list[Sandbox], phase: str) -> dict[str, dict[str, list[float]]]:
        out: dict[str, dict[str, list[float]]] = {sb.label: {k: [] for k in SAMPLE_KEYS} for sb in sbs}
        for s in range(self.args.samples):
            print(f"\r  (b) {phase}: sample {s + 1}/{self.args.samples}   ", end="", file=sys.stderr, flush=True)
            k = s % len(sbs)
            for sb in sbs[k:] + sbs[:k]:
                self.agent.check()
                ms_add, ms_del, e_add, e_del, _ = sb.cycle()
                for key, ms in zip(SAMPLE_KEYS, (ms_add, ms_del, e_add[0].ms, e_add[1].ms, e_del[0].ms, e_del[1].ms)):
                    out[sb.label][key].append(ms)
        print(file=sys.stderr)
        return out

    def populate(self, sb: Sandbox, n: int) -> tuple[float, set[int]]:
        """n attachments, each with a published port, ``--populate-concurrency`` at a time."""
        containers, ports = sb.attachments(n)
        done = [0]
        lock = threading.Lock()

        def one(i: int) -> str:
            _, result, _ = sb.chain_add(containers[i], ports[i])
            with lock:
                done[0] += 1
                if done[0] % 25 == 0 or done[0] == n:
                    print(f"\r  (b) populating {sb.label}: {done[0]}/{n}   ", end="", file=sys.stderr, flush=True)
            return self.address_of(result)

        self.agent.check()
        wall, addrs = self.concurrently(one, n, self.args.populate_concurrency)
        print(file=sys.stderr)
        self.agent.check()
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
        self.doc.update(b={"attachments": n, "at_0": at0, "at_n": atn, "populate_s": populate_s,
                           "sandboxes": {sb.label: sb.host for sb in sbs}},
                        b_seconds=time.monotonic() - t0, agent_after_b=self.agent.status())

    def report(self) -> dict[str, Any]:
        m = self.doc["machine"]
        print(f"\nkernel {m['kernel']}, {m['cpus']} CPUs, Python {m['python']}; {time.monotonic() - self.t0:.0f} s in all")
        for key, show in (("a", lambda: print_a(self.doc, self.args.concurrency, self.args.rounds)),
                          ("b", lambda: print_b(self.doc, self.args.samples)), ("agent_at_start", lambda: print_c(self.doc)),
                          ("d", lambda: print_d(self.doc))):
            if key in self.doc:
                print()
                show()
        return self.doc


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
    print(ruled(head))
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
    print(ruled(head))
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
    print(ruled(head))
    for label in b["at_0"]:
        cells = [f"{summary(b['at_0'][label][k])['median']:.0f} -> {summary(b['at_n'][label][k])['median']:.0f}"
                 for _, k in execs]
        print(f"{label:<24}" + "".join(f" {c:>20}" for c in cells))


def print_c(doc: dict[str, Any]) -> None:
    print("(c) peak RSS, MiB")
    st = doc["agent_at_start"]
    parts = [f"at start (idle, warm imports) {mib(st['VmHWM'])}"] + [
        f"after ({p}) {mib(doc[f'agent_after_{p}']['VmHWM'])}" for p in "ab" if f"agent_after_{p}" in doc]
    print("agent process VmHWM: " + ", ".join(parts))
    last = doc.get("agent_after_d") or doc.get("agent_after_b") or doc.get("agent_after_a") or st
    print(f"agent process at the end: VmRSS {mib(last['VmRSS'])}, {last['Threads']} threads")
    rss = doc.get("exec_maxrss_kib")
    if not rss:
        print(f"(no plugin exec peak RSS: {GNU_TIME} missing, or part (a) not run)")
    else:
        labels = list(rss)
        head = f"{'one plugin exec, peak RSS':<28}" + "".join(f" {lb:>18}" for lb in labels)
        print(ruled(head))
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


if __name__ == "__main__":
    ap = parser(__doc__)
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
    sys.exit(main(ap, Scale, ("bridge", "host-local", "portmap"), ("nft", "iptables-save", "iptables-legacy-save"),
                  lambda a: "--parts takes the letters a, b and d" if not a.parts or set(a.parts) - set("abd") else
                  "counts must be at least 1" if min(a.concurrency, a.rounds, a.attachments, a.samples,
                                                     a.populate_concurrency, a.requests) < 1 else ""))
