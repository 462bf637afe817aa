"""Issue 7's targets against the figures the benchmarks wrote: one table, met or not.

Reads the JSON files ``./setup.sh bench`` writes into ``bench/results/`` (cni_latency, scale,
throughput, runtime_start without and with the agent), prints one line per target with the measured ratio, and writes
``bench/results/targets.json``.  It measures nothing itself: a target whose benchmark did not run
(or failed before writing its JSON) is reported as "not measured", never as met.

    .venv/bin/python bench/targets.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from statistics import median as _med
from typing import Any, Callable

Figure = tuple[float, str]      # (ratio, how it was computed); a document missing (None) or of another
                                # shape (a figure not measured) raises KeyError or TypeError: evaluate() says so


def _load(results: str, name: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(results, f"{name}.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _latency(doc: dict[str, Any] | None, row: str, variant: str) -> Figure:
    """netkit ``variant`` / reference for a cni_latency row (medians, ``ip netns exec`` cost subtracted)."""
    ops = doc["operations"][row]
    n, r = ops[variant]["minus_baseline"]["median"], ops["reference"]["minus_baseline"]["median"]
    return n / r, f"{n:.1f} / {r:.1f} ms"


def _concurrent(doc: dict[str, Any] | None) -> Figure:
    a, r = _med(doc["a"]["netkit agent"]["add_wall_s"]), _med(doc["a"]["reference"]["add_wall_s"])
    return a / r, f"{a:.2f} / {r:.2f} s"


def _growth(doc: dict[str, Any] | None, label: str) -> Figure:
    b = doc["b"]
    zero, n = _med(b["at_0"][label]["add_ms"]), _med(b["at_n"][label]["add_ms"])
    return n / zero, f"{n:.1f} ms at {b['attachments']} / {zero:.1f} ms at 0"


def _throughput(doc: dict[str, Any] | None, case: str) -> Figure:
    g = doc["gbps_median"]
    return g[case]["netkit"] / g["c"]["netkit"], f"{g[case]['netkit']:.2f} / {g['c']['netkit']:.2f} Gbit/s"


def _run_d(doc: dict[str, Any] | None) -> Figure:
    row = doc["rows"]["ready"]  # (podman not measured: no "podman" cell)
    n, p = row["netkit"]["summary"]["median"], row["podman"]["summary"]["median"]
    return n / p, f"{n:.0f} / {p:.0f} ms"


# (target, bound, "<=" or ">=", how to get the figure from the loaded documents)
TARGETS: list[tuple[str, float, str, Callable[[dict[str, Any]], Figure]]] = [
    ("agent: bridge+ipam+portmap ADD / reference", 0.8, "<=",
     lambda d: _latency(d["cni_latency"], "ADD bridge+ipam+portmap", "netkit-agent")),
    ("agent: bridge+ipam+portmap DEL / reference", 0.5, "<=",
     lambda d: _latency(d["cni_latency"], "DEL bridge+ipam+portmap", "netkit-agent")),
    ("agent: 32 concurrent ADDs, wall / reference", 1.0, "<=", lambda d: _concurrent(d["scale"])),
    ("in-process: bridge+ipam+portmap ADD / reference", 3.0, "<=",
     lambda d: _latency(d["cni_latency"], "ADD bridge+ipam+portmap", "netkit")),
    ("ADD at 500 present / at 0, nftables", 1.2, "<=", lambda d: _growth(d["scale"], "netkit agent, nftables")),
    ("ADD at 500 present / at 0, iptables", 1.2, "<=", lambda d: _growth(d["scale"], "netkit agent, iptables")),
    ("throughput hostIP:hostPort / direct", 0.95, ">=", lambda d: _throughput(d["throughput"], "a")),
    ("throughput 127.0.0.1:hostPort / direct", 0.95, ">=", lambda d: _throughput(d["throughput"], "b")),
    ("`run -d -p` until HTTP answers / podman, agent", 0.5, "<=", lambda d: _run_d(d["runtime_start_agent"])),
    ("`run -d -p` until HTTP answers / podman, no agent", 0.5, "<=", lambda d: _run_d(d["runtime_start"])),
]


def evaluate(results: str) -> list[dict[str, Any]]:
    """One record per target: its figure, bound and verdict ("met", "not met", "not measured")."""
    docs = {name: _load(results, name)
            for name in ("cni_latency", "scale", "throughput", "runtime_start", "runtime_start_agent")}
    out = []
    for name, bound, op, get in TARGETS:
        try:
            fig = get(docs)
        except (KeyError, TypeError, ZeroDivisionError):
            fig = None  # a JSON of another shape (an older script): not a figure for this target
        if fig is None:
            out.append({"target": name, "bound": f"{op} {bound}", "ratio": None, "verdict": "not measured"})
            continue
        ratio, how = fig
        met = ratio <= bound if op == "<=" else ratio >= bound
        out.append({"target": name, "bound": f"{op} {bound}", "ratio": ratio, "from": how,
                    "verdict": "met" if met else "not met"})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    help="directory of the benchmarks' JSON files (default bench/results)")
    args = ap.parse_args()
    rows = evaluate(args.results)
    head = f"{'target':<50} {'bound':>7} {'ratio':>6}  {'verdict':<13} from"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"{r['target']:<50} {r['bound']:>7} {ratio:>6}  {r['verdict']:<13} {r.get('from', '')}")
    with open(os.path.join(args.results, "targets.json"), "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=2)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
