#!/usr/bin/env python3
"""Cold start of every netkit plugin command, and what its imports cost.

Run as root from the repository root::

    .venv/bin/python bench/cold_start.py [--runs 30]

Median and p95 of exec -> exit of each command of netkit-bridge (netkit-ipam delegated) and netkit-ipam,
in-process (no agent), in a throwaway sandbox namespace, then the top imports of an ADD (`python -X importtime`).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.bench import NO_AGENT, BenchError, Run, main, parser  # noqa: E402
from harness.cnichain import exec_in  # noqa: E402

COMMANDS = ("VERSION", "ADD", "CHECK", "STATUS", "GC", "DEL")


class ColdStart(Run):
    prefix = "nkc"

    def setup(self) -> None:
        super().setup()
        self.host, self.container = f"{self.tag}-h", f"{self.tag}-c"
        self.conf = {"cniVersion": "1.1.0", "name": "cold", "type": "netkit-bridge", "bridge": f"{self.tag}br",
                     "isGateway": True, "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.98.0.0/16"}]],
                                                 "dataDir": os.path.join(self.tmp, "data")}}
        self.base = {"PATH": os.environ.get("PATH", ""), "CNI_PATH": self.bin_dir, "CNI_CONTAINERID": "cold1",
                     "CNI_IFNAME": "eth0", "CNI_NETNS": f"/run/netns/{self.container}",
                     # In-process, whatever this machine runs: no agent listens there, none is started.
                     "NETKIT_AGENT_SOCKET": NO_AGENT, "NETKIT_AGENT": "off"}
        self.ns.add(self.host, self.container)

    def exec(self, argv: list[str], command: str, body: dict[str, Any]) -> Any:
        return exec_in(self.host, argv, dict(self.base, CNI_COMMAND=command), json.dumps(body).encode())

    def measure(self) -> None:
        self.rows: list[tuple[str, list[float]]] = []
        for plugin in ("netkit-bridge", "netkit-ipam"):
            exe = os.path.join(self.bin_dir, plugin)
            samples: dict[str, list[float]] = {c: [] for c in COMMANDS}
            for _ in range(self.args.runs):
                prev = None
                for command in samples:
                    body = dict(self.conf, prevResult=prev) if command in ("CHECK", "DEL") and prev else self.conf
                    if command == "GC":
                        body = dict(self.conf, **{"cni.dev/valid-attachments": [{"containerID": "cold1", "ifname": "eth0"}]})
                    e = self.exec([exe], command, body)
                    if e.code != 0:
                        raise BenchError(f"{plugin} {command} failed: {e.out}{e.err}")
                    if command == "ADD":
                        prev = json.loads(e.out)
                    samples[command].append(e.ms)
            self.rows += [(f"{plugin} {c}", v) for c, v in samples.items()]
        bridge = os.path.join(self.bin_dir, "netkit-bridge")
        e = self.exec([sys.executable, "-IS", "-X", "importtime", bridge], "ADD", self.conf)
        lines = [ln for ln in e.err.splitlines() if ln.startswith("import time:") and "|" in ln]
        # Top-level imports only: a nested one's name is indented past the one space after "|".
        cum = sorted(((int(ln.split("|")[1]), ln.split("|")[2][1:]) for ln in lines[1:]), reverse=True)
        self.top = [(us, name) for us, name in cum if not name.startswith(" ")][:6]
        self.exec([bridge], "DEL", self.conf)

    def report(self) -> dict[str, Any]:
        print(f"cold start, ms, {self.args.runs} runs each (exec via `ip netns exec`, ~3 ms of it)")
        print(f"{'command':28} {'median':>8} {'p95':>8}")
        doc: dict[str, Any] = {"runs": self.args.runs, "rows": {}, "top_imports_ms": {}}
        for name, v in self.rows:
            v = sorted(v)
            doc["rows"][name] = {"median": statistics.median(v), "p95": v[int(len(v) * 0.95) - 1]}
            print(f"{name:28} {doc['rows'][name]['median']:8.1f} {doc['rows'][name]['p95']:8.1f}")
        print("\ntop-level imports of netkit-bridge ADD (cumulative ms):")
        for us, name in self.top:
            doc["top_imports_ms"][name] = us / 1000
            print(f"  {name:40} {us / 1000:7.1f}")
        return doc


if __name__ == "__main__":
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=30)
    sys.exit(main(ap, ColdStart, check=lambda a: "--runs must be at least 1" if a.runs < 1 else ""))
