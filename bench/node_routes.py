#!/usr/bin/env python3
"""Time from a Node's change to the route on the other nodes, with `netkit node`.

Run as root from the repository root::

    .venv/bin/python bench/node_routes.py [--runs 20] [--interval 0.5]

Three node namespaces on one segment, `netkit node` in each; every run moves node n3's podCIDR
and times, from the change, until n1 and n2 both route the new subnet via n3.  Twice: the nodes
file rewritten (polled every --interval seconds, so about half of that is waiting for the poll), and
a watch event from a stand-in for the Kubernetes API server (harness/kubeapi.py: the real one cannot
run here) listening in n1's namespace, where only n1 runs on the API source.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.bench import BenchError, Run, main, parser, summary  # noqa: E402
from harness.kubeapi import Server, StandInApi, kubeconfig, node_object  # noqa: E402
from netkit.net import netns  # noqa: E402
from netkit.net.netlink import IPRoute  # noqa: E402
from netkit.node import routes  # noqa: E402

NODES = ("n1", "n2", "n3")


def _ip(name: str) -> str:
    return f"192.168.78.{10 + int(name[1:])}"


class NodeRoutes(Run):
    prefix = "nkn"

    def setup(self) -> None:
        super().setup()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.server: Server | None = None
        self.sockets: dict[str, Any] = {}
        self.api = StandInApi()
        seg, *hosts = self.ns.add(f"{self.tag}-seg", *(f"{self.tag}-{n}" for n in NODES), lo=True)
        seg.run("ip", "link", "add", "br0", "type", "bridge", check=True)
        seg.run("ip", "link", "set", "br0", "up", check=True)
        self.hosts = dict(zip(NODES, hosts))
        for i, (name, host) in enumerate(self.hosts.items()):
            seg.run("ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", host.name, check=True)
            seg.run("ip", "link", "set", f"p{i}", "master", "br0", "up", check=True)
            host.run("ip", "addr", "add", f"{_ip(name)}/24", "dev", "eth0", check=True)
            host.run("ip", "link", "set", "eth0", "up", check=True)
        self.nodes_file = os.path.join(self.tmp, "nodes.json")
        self._write_file("10.244.3.0/24")

    def _write_file(self, n3_cidr: str) -> None:
        cidrs = {"n1": "10.244.1.0/24", "n2": "10.244.2.0/24", "n3": n3_cidr}
        tmp = self.nodes_file + ".new"
        with open(tmp, "w") as f:
            json.dump({"nodes": [{"name": n, "internalIP": _ip(n), "podCIDRs": [c]} for n, c in cidrs.items()]}, f)
        os.replace(tmp, self.nodes_file)

    def _start(self, name: str, source: list[str]) -> None:
        host = self.hosts[name]
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        self.procs.append(subprocess.Popen(
            [*host.enter(), sys.executable, "-m", "netkit", "node", *source, "--node-name", name,
             "--conf-dir", os.path.join(self.tmp, name), "--ready-file", os.path.join(self.tmp, f"{name}.ready"),
             "--interval", str(self.args.interval)], stdout=log, stderr=log))
        log.close()

    def _stop_all(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.cleanup_problems.append(f"netkit node pid {proc.pid} ignored SIGTERM")
        self.procs = []

    def _socket(self, name: str) -> Any:
        with netns.entered(self.hosts[name].path):
            return IPRoute()  # a netlink socket stays in the namespace it was made in

    def _wait_routes(self, names: tuple[str, ...], cidr: str, t0: float, deadline: float = 30.0) -> float:
        """Seconds from ``t0`` until every node of ``names`` routes ``cidr`` (netlink, polled each ms)."""
        want = ipaddress.ip_network(cidr)
        pending = set(names)
        while pending:
            for name in list(pending):
                if routes.ours(self.sockets[name]).get(want) is not None:
                    pending.discard(name)
            if time.perf_counter() - t0 > deadline:
                raise BenchError(f"{sorted(pending)} never routed {cidr}")
            time.sleep(0.001)
        return time.perf_counter() - t0

    def measure(self) -> None:
        self.samples: dict[str, list[float]] = {"nodes file": [], "API watch event": []}
        self.sockets = {name: self._socket(name) for name in ("n1", "n2")}
        for name in NODES:
            self._start(name, ["--nodes-file", self.nodes_file])
        self._wait_routes(("n1", "n2"), "10.244.3.0/24", time.perf_counter())
        for i in range(self.args.runs):
            cidr = f"10.245.{i}.0/24"
            # At a random point of the poll interval: right after a route shows, the nodes have just
            # polled, and every change would wait the whole interval.
            time.sleep(random.uniform(0, self.args.interval))
            t0 = time.perf_counter()
            self._write_file(cidr)
            self.samples["nodes file"].append(self._wait_routes(("n1", "n2"), cidr, t0))
        self._stop_all()
        for n in NODES:
            self.api.put(node_object(n, _ip(n), [f"10.244.{n[1:]}.0/24"]))
        with netns.entered(self.hosts["n1"].path):
            listener = socket.create_server(("127.0.0.1", 0))
        self.server = Server(self.api, listener)
        config = os.path.join(self.tmp, "kubeconfig")
        with open(config, "w") as f:
            f.write(kubeconfig(self.server.url))
        self._start("n1", ["--kubeconfig", config])
        self._wait_routes(("n1",), "10.244.3.0/24", time.perf_counter())
        for i in range(self.args.runs):
            cidr = f"10.246.{i}.0/24"
            t0 = time.perf_counter()
            self.api.put(node_object("n3", _ip("n3"), [cidr]))
            self.samples["API watch event"].append(self._wait_routes(("n1",), cidr, t0))

    def teardown(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self._stop_all()
        if self.server is not None:
            self.api.drop()
            self.server.close()
        super().teardown()

    def report(self) -> dict[str, Any]:
        print(f"Node change -> route on the other nodes, ms, {self.args.runs} runs, file poll every "
              f"{self.args.interval} s")
        print(f"{'source':18} {'median':>8} {'p95':>8} {'max':>8}")
        doc: dict[str, Any] = {"runs": self.args.runs, "interval": self.args.interval, "rows": {}}
        for name, values in self.samples.items():
            ms = [v * 1000 for v in values]
            doc["rows"][name] = dict(summary(ms), samples=ms)
            s = doc["rows"][name]
            print(f"{name:18} {s['median']:8.1f} {s['p95']:8.1f} {max(ms):8.1f}")
        return doc


if __name__ == "__main__":
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.5)
    sys.exit(main(ap, NodeRoutes, check=lambda a: "--runs must be at least 1" if a.runs < 1 else ""))
