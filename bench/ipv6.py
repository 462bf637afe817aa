#!/usr/bin/env python3
"""What dual stack costs an attachment: netkit-bridge ADD and DEL with one published port, IPv4-only
against dual-stack, on each firewall backend, in one run, interleaved.

Run as root from the repository root::

    .venv/bin/python bench/ipv6.py [--runs 20]

Each ADD/DEL is an exec of the installed plugin (in-process, no agent: the cold path a runtime
without the agent takes) inside a sandbox host namespace of its own, timed from spawn to exit
(harness.bench.timed).  Dual stack on nftables adds an IPv6 address, route and rules to the same
batch and starts the [::1] proxy; on iptables it also runs the IPv6 half in a child process
(netkit/firewall/iptables6.py).  Medians in ms; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.agent import NO_AGENT_ENV  # noqa: E402
from harness.bench import NO_AGENT, summary, timed  # noqa: E402
from harness.hostns import Namespaces  # noqa: E402
from netkit.launch import install  # noqa: E402

VARIANTS = [(fw, stack) for fw in ("nftables", "iptables") for stack in ("v4", "dual")]


def conf(data_dir: str, stack: str) -> dict:
    ranges = [[{"subnet": "10.77.0.0/16"}]] + ([[{"subnet": "fd00:77::/64"}]] if stack == "dual" else [])
    routes = [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if stack == "dual" else [])
    return {"cniVersion": "1.0.0", "name": f"b{stack}", "type": "netkit-bridge", "bridge": f"nkb{stack}",
            "isGateway": True, "ipMasq": True, "hairpinMode": True, "capabilities": {"portMappings": True},
            "ipam": {"type": "netkit-ipam", "ranges": ranges, "routes": routes, "dataDir": data_dir}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="nk-bench-ipv6-")
    bin_dir = os.path.join(work, "bin")
    install.install_plugins(bin_dir)
    spaces = Namespaces("nkb6")
    times: dict[str, dict[str, list[float]]] = {f"{fw}/{stack}": {"ADD": [], "DEL": []} for fw, stack in VARIANTS}
    try:
        hosts = {v: spaces.add(f"{spaces.tag}-{v[0][:3]}{v[1]}", lo=True)[0] for v in VARIANTS}
        for i in range(args.runs + 1):  # round 0 warms up (bridge, tables, the firewall's caches)
            for fw, stack in VARIANTS:
                host = hosts[(fw, stack)]
                (c,) = spaces.add(f"{spaces.tag}-c{i}{fw[:3]}{stack}", lo=True)
                env = {"PATH": os.environ["PATH"], "CNI_PATH": bin_dir, "NETKIT_FIREWALL_BACKEND": fw,
                       "NETKIT_AGENT_SOCKET": NO_AGENT, **NO_AGENT_ENV, "CNI_NETNS": c.path,
                       "CNI_IFNAME": "eth0", "CNI_CONTAINERID": c.name}
                stdin = json.dumps(dict(conf(os.path.join(work, "leases"), stack),
                                        runtimeConfig={"portMappings": [{"hostPort": 8080 + i, "containerPort": 80}]}))
                for command in ("ADD", "DEL"):
                    ms, code, out, err, _ = timed(host.enter() + [os.path.join(bin_dir, "netkit-bridge")],
                                                  dict(env, CNI_COMMAND=command), stdin=stdin.encode(), own_session=False)
                    if code != 0:
                        raise SystemExit(f"{fw}/{stack} {command} failed: {out or err}")
                    if i:
                        times[f"{fw}/{stack}"][command].append(ms)
                spaces.delete(c.name)
    finally:
        problems = spaces.close()
    print(f"netkit-bridge exec with one published port, median ms over {args.runs} runs (p95)")
    for name, per in times.items():
        add, dele = summary(per["ADD"]), summary(per["DEL"])
        print(f"  {name:14} ADD {add['median']:7.1f} ({add['p95']:6.1f})   DEL {dele['median']:7.1f} ({dele['p95']:6.1f})")
    for fw in ("nftables", "iptables"):
        v4, dual = (summary(times[f"{fw}/{s}"]["ADD"])["median"] for s in ("v4", "dual"))
        print(f"  {fw}: dual-stack ADD / IPv4-only ADD = {dual / v4:.2f}")
    if problems:
        print("cleanup problems:", problems, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
