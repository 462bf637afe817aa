#!/usr/bin/env python3
"""Cold start of every netkit plugin command, and what its imports cost.

Run as root from the repository root::

    .venv/bin/python bench/cold_start.py [--runs 30]

For each command of netkit-bridge (with netkit-ipam delegated) and netkit-ipam alone, the median
and p95 wall time of exec -> exit over N runs, inside a throwaway sandbox namespace (deleted
afterwards, also on error); then the top imports of an ADD (`python -X importtime`).  The reference
plugins' numbers for the same commands are in bench/cni_latency.py's table.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from netkit.launch import install  # noqa: E402


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def timed(host: str, exe: str, env: dict[str, str], stdin: bytes) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t = time.perf_counter()
    proc = subprocess.run(["ip", "netns", "exec", host, exe], input=stdin, env=env, capture_output=True)
    return (time.perf_counter() - t) * 1000, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    opts = ap.parse_args()
    tag = f"nkc{secrets.token_hex(3)}"
    host, container = f"{tag}-h", f"{tag}-c"
    tmp = tempfile.mkdtemp(prefix="netkit-cold-")
    bin_dir = os.path.join(tmp, "bin")
    install.install(bin_dir=bin_dir, conf_dir=os.path.join(tmp, "conf"))
    conf = {"cniVersion": "1.1.0", "name": "cold", "type": "netkit-bridge", "bridge": f"{tag}br",
            "isGateway": True, "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.98.0.0/16"}]],
                                        "dataDir": os.path.join(tmp, "data")}}
    base = {"PATH": os.environ.get("PATH", ""), "CNI_PATH": bin_dir, "CNI_CONTAINERID": "cold1",
            "CNI_IFNAME": "eth0", "CNI_NETNS": f"/run/netns/{container}"}
    rows: list[tuple[str, list[float]]] = []
    ip("netns", "add", host)
    ip("netns", "add", container)
    try:
        for plugin in ("netkit-bridge", "netkit-ipam"):
            exe = os.path.join(bin_dir, plugin)
            samples: dict[str, list[float]] = {c: [] for c in ("VERSION", "ADD", "CHECK", "STATUS", "GC", "DEL")}
            for _ in range(opts.runs):
                prev = None
                for command in samples:
                    body = dict(conf, prevResult=prev) if command in ("CHECK", "DEL") and prev else conf
                    if command == "GC":
                        body = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "cold1", "ifname": "eth0"}]})
                    ms, proc = timed(host, exe, dict(base, CNI_COMMAND=command), json.dumps(body).encode())
                    if proc.returncode != 0:
                        raise SystemExit(f"{plugin} {command} failed: {proc.stdout.decode()}{proc.stderr.decode()}")
                    if command == "ADD":
                        prev = json.loads(proc.stdout)
                    samples[command].append(ms)
            rows += [(f"{plugin} {c}", v) for c, v in samples.items()]
        print(f"cold start, ms, {opts.runs} runs each (exec via `ip netns exec`, ~3 ms of it)")
        print(f"{'command':28} {'median':>8} {'p95':>8}")
        for name, v in rows:
            v = sorted(v)
            print(f"{name:28} {statistics.median(v):8.1f} {v[int(len(v) * 0.95) - 1]:8.1f}")
        env = dict(base, CNI_COMMAND="ADD")
        proc = subprocess.run(["ip", "netns", "exec", host, sys.executable, "-IS", "-X", "importtime",
                               os.path.join(bin_dir, "netkit-bridge")], input=json.dumps(conf).encode(),
                              env=env, capture_output=True)
        lines = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("import time:") and "|" in ln]
        cum = sorted(((int(ln.split("|")[1]), ln.split("|")[2].strip()) for ln in lines[1:]), reverse=True)
        top = [(us, name) for us, name in cum if not name.startswith(" ")][:6]
        print("\ntop-level imports of netkit-bridge ADD (cumulative ms):")
        for us, name in top:
            print(f"  {name:40} {us / 1000:7.1f}")
        subprocess.run(["ip", "netns", "exec", host, os.path.join(bin_dir, "netkit-bridge")],
                       input=json.dumps(conf).encode(), env=dict(base, CNI_COMMAND="DEL"), capture_output=True)
    finally:
        for ns in (container, host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
