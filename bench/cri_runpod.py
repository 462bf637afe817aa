#!/usr/bin/env python3
"""CRI RunPodSandbox through containerd 1.6's CRI plugin with netkit's plugins and with the reference
plugins, side by side in one run (issue 18's figure).

Run as root from the repository root::

    .venv/bin/python bench/cri_runpod.py [--runs 20] [--json out.json]

Two containerds with the CRI plugin (harness/cricontainerd.py), each in a sandbox host network
namespace of its own: "netkit" with `netkit cni install`'s launchers, the default conflist and a
warm agent; "reference" with Debian's bridge + host-local + portmap (and loopback) in the same
shape.  Rounds alternate between them, so load from elsewhere falls on both alike.  Timed: the
RunPodSandbox call (the sandbox container made and started, go-cni's ADD of loopback and the main
network), then StopPodSandbox (DEL) and RemovePodSandbox; a pod with one hostPort.  Nothing is
asserted; see bench/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import containerd as hc  # noqa: E402
from harness import cri, cricontainerd as hcc  # noqa: E402
from harness.agent import stop_started  # noqa: E402
from harness.bench import REFERENCE_BIN, summary  # noqa: E402
from harness.hostns import Namespaces  # noqa: E402

SUBNETS = {"netkit": ipaddress.ip_network("10.79.0.0/24"), "reference": ipaddress.ip_network("10.79.1.0/24")}
REFERENCE_TYPES = {"netkit-bridge": "bridge", "netkit-ipam": "host-local"}


def reference_dirs(tmp: str, subnet: ipaddress.IPv4Network) -> tuple[str, str, str, str]:
    """As hc.prepare, for the reference plugins: links to them, the default conflist's shape with
    their types (bridge with ipMasq, host-local) and portmap for the portMappings capability."""
    top, bin_dir, conf_dir, data_dir = (os.path.join(tmp, d) for d in ("containerd", "bin", "net.d", "leases"))
    for d in (top, bin_dir, conf_dir):
        os.makedirs(d)
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        os.symlink(os.path.join(REFERENCE_BIN, plugin), os.path.join(bin_dir, plugin))
    from netkit.launch import install

    conflist = install.default_conflist(subnet)
    bridge = conflist["plugins"][0]  # type: ignore[index]
    bridge["type"], bridge["ipam"]["type"] = "bridge", "host-local"
    bridge["ipam"]["dataDir"] = data_dir
    del bridge["ipam"]["routes"]  # the reference bridge's isDefaultGateway adds the default route itself
    del bridge["capabilities"]
    conflist["plugins"].append({"type": "portmap", "capabilities": {"portMappings": True}})  # type: ignore[attr-defined]
    with open(os.path.join(conf_dir, "reference.conflist"), "w") as f:
        json.dump(conflist, f)
    return top, bin_dir, conf_dir, data_dir


@contextlib.contextmanager
def node(impl: str, tmp: str, spaces: Namespaces) -> Iterator[tuple[cri.RuntimeClient, str]]:
    """A CRI containerd of ``impl`` in a sandbox host of its own, and its pods' cgroup parent;
    everything gone afterwards."""
    (host,) = spaces.add(f"{spaces.tag}-{impl}", lo=True)
    subnet = SUBNETS[impl]
    top, bin_dir, conf_dir, _ = hc.prepare(tmp, subnet, loopback=hcc.CriContainerd.LOOPBACK) if impl == "netkit" else reference_dirs(tmp, subnet)
    socket = os.path.join(tmp, "agent.sock")
    daemon = hcc.CriContainerd(top, host.path, bin_dir, conf_dir, NETKIT_AGENT_SOCKET=socket)
    client = None
    try:
        daemon.start()
        client = cri.RuntimeClient(daemon.socket)
        yield client, daemon.cgroup_parent
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                for sandbox_id in client.list_pod_sandbox():
                    client.remove_pod_sandbox(sandbox_id)
            client.close()
        for problem in daemon.teardown():
            print(f"CLEANUP PROBLEM ({impl}): {problem}")
        stop_started(socket)


def one_pod(client: cri.RuntimeClient, cgroup_parent: str, n: int) -> tuple[float, float]:
    """(RunPodSandbox ms, Stop + Remove ms) of one pod with a hostPort."""
    config = cri.PodSandboxConfig(name=f"bench{n}", uid=str(uuid.uuid4()), hostname=f"bench{n}",
                                  cgroup_parent=cgroup_parent,
                                  port_mappings=[cri.PortMapping(container_port=80, host_port=20000 + n)])
    start = time.perf_counter()
    sandbox_id = client.run_pod_sandbox(config)
    run_ms = (time.perf_counter() - start) * 1000
    if not client.pod_sandbox_status(sandbox_id).ip:
        raise RuntimeError("a pod without an IP: the figures would be meaningless")
    start = time.perf_counter()
    client.stop_pod_sandbox(sandbox_id)
    client.remove_pod_sandbox(sandbox_id)
    return run_ms, (time.perf_counter() - start) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if os.geteuid() != 0 or hc.unmet():
        print(hc.unmet() or "needs root", file=sys.stderr)
        return 1
    print("command:", " ".join(sys.argv))
    spaces = Namespaces("nkcri")
    tmp = tempfile.mkdtemp(prefix="nkcri")
    times: dict[str, dict[str, list[float]]] = {i: {"run": [], "stop_remove": []} for i in SUBNETS}
    try:
        with contextlib.ExitStack() as stack:
            clients = {impl: stack.enter_context(node(impl, os.path.join(tmp, impl), spaces)) for impl in SUBNETS}
            for n in range(args.warmup + args.runs):
                for impl, (client, cgroup_parent) in clients.items():
                    run_ms, stop_ms = one_pod(client, cgroup_parent, n)
                    if n >= args.warmup:
                        times[impl]["run"].append(run_ms)
                        times[impl]["stop_remove"].append(stop_ms)
    finally:
        for problem in spaces.close():
            print(f"CLEANUP PROBLEM: {problem}")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'ms':<28}{'median':>9}{'p95':>9}{'min':>9}{'max':>9}")
    for impl in SUBNETS:
        for what in ("run", "stop_remove"):
            s = summary(times[impl][what])
            print(f"{impl + ' ' + what:<28}{s['median']:9.1f}{s['p95']:9.1f}{s['min']:9.1f}{s['max']:9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "times_ms": times,
                       "summary": {i: {w: summary(v) for w, v in t.items()} for i, t in times.items()}}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
