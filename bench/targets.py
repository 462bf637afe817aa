"""Issue 16's targets against the figures the benchmarks wrote: one table, met or not.

Reads the JSON files ``./setup.sh bench`` writes into ``bench/results/`` (podman_shape, podman_plugins
with the agent, runtime_start with the agent, scale), prints one line per target with the measured
ratio (for an absolute bound: the figure over the bound, so 1.0 is the bound), and writes
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


def _shape(doc: dict[str, Any] | None, row: str, variant: str, over: str = "reference") -> Figure:
    """podman_shape: median of ``variant`` / median of ``over`` in ``row`` (the same run, interleaved)."""
    per = doc["rows"][row]
    n, r = per[variant]["summary"]["median"], per[over]["summary"]["median"]
    return n / r, f"{n:.1f} / {r:.1f} ms ({over})"


def _absolute(doc: dict[str, Any] | None, row: str, variant: str, bound_ms: float) -> Figure:
    """podman_shape: a median against an absolute bound (the "ratio" is median / bound, so <= 1 is met)."""
    n = doc["rows"][row][variant]["summary"]["median"]
    return n / bound_ms, f"{n:.1f} ms / {bound_ms:.0f} ms"


def _concurrent(doc: dict[str, Any] | None) -> Figure:
    c = doc["concurrent"]["summary"]
    a, r = c["default install"]["median"], c["reference"]["median"]
    return a / r, f"{a:.0f} / {r:.0f} ms, {doc['concurrent']['n']} at once"


def _growth(doc: dict[str, Any] | None, label: str) -> Figure:
    b = doc["b"]
    zero, n = _med(b["at_0"][label]["add_ms"]), _med(b["at_n"][label]["add_ms"])
    return n / zero, f"{n:.1f} ms at {b['attachments']} / {zero:.1f} ms at 0"


def _memory(doc: dict[str, Any] | None, when: str, field: str, bound_mib: float) -> Figure:
    """scale: the agent's ``field`` (KiB) at ``when`` against an absolute bound in MiB."""
    kib = doc[when][field]
    return kib / 1024 / bound_mib, f"{field} {kib / 1024:.1f} MiB / {bound_mib:.0f} MiB"


def _podman(doc: dict[str, Any] | None, row: str) -> Figure:
    cells = doc["rows"][row]
    n, r = cells["netkit"]["summary"]["median"], cells["reference"]["summary"]["median"]
    return n / r, f"{n:.0f} / {r:.0f} ms"


def _runtime(doc: dict[str, Any] | None, row: str) -> Figure:
    cells = doc["rows"][row]
    n, p = cells["netkit"]["summary"]["median"], cells["podman"]["summary"]["median"]
    return n / p, f"{n:.0f} / {p:.0f} ms"


def _dns(doc: dict[str, Any] | None, key: str) -> Figure:
    """bench/dns.py: netkit-dns over aardvark-dns 1.4, measured in the same rounds."""
    rows = doc["rows"]
    if key == "qps":
        n, a = rows["netkit-dns"]["qps_median"], rows["aardvark-dns 1.4"]["qps_median"]
        return n / a, f"{n:.0f} / {a:.0f} queries/s"
    n, a = rows["netkit-dns"]["latency_us"]["median"], rows["aardvark-dns 1.4"]["latency_us"]["median"]
    return n / a, f"{n:.0f} / {a:.0f} us"


def _dns_add(doc: dict[str, Any] | None, bound_ms: float) -> Figure:
    n = doc["add_ms"]["netkit-dns"]["median"]
    return n / bound_ms, f"{n:.1f} ms / {bound_ms:.0f} ms"


DI, IP, FIRST = "default install", "in-process", "first ADD, no agent yet"
OLD_IP = f"{IP} (--compare)"
# (target, bound, "<=" or ">=", how to get the figure from the loaded documents)
TARGETS: list[tuple[str, float, str, Callable[[dict[str, Any]], Figure]]] = [
    ("default install: chain ADD / reference", 0.8, "<=", lambda d: _shape(d["podman_shape"], "ADD chain", DI)),
    ("default install: chain DEL / reference", 0.5, "<=", lambda d: _shape(d["podman_shape"], "DEL chain", DI)),
    ("default install: bridge+IPAM ADD / reference", 1.2, "<=",
     lambda d: _shape(d["podman_shape"], "ADD bridge+ipam", DI)),
    ("default install: 16 concurrent ADDs, wall / ref", 1.0, "<=", lambda d: _concurrent(d["podman_shape"])),
    # "Today's" in-process ADD: the baseline tree's (setup.sh bench: BENCH_BASELINE, the code before
    # issue 16), measured in the same rounds (podman_shape --compare).
    ("first ADD (no agent yet) / today's in-process ADD", 1.0, "<=",
     lambda d: _shape(d["podman_shape"], "ADD bridge+ipam", FIRST, OLD_IP)),
    ("in-process: chain ADD / reference", 2.5, "<=", lambda d: _shape(d["podman_shape"], "ADD chain", IP)),
    ("in-process: VERSION / 15 ms", 1.0, "<=", lambda d: _absolute(d["podman_shape"], "VERSION", IP, 15)),
    ("podman run --rm, netkit / reference plugins", 1.0, "<=", lambda d: _podman(d["podman_plugins"], "plain")),
    ("podman run --rm -p, netkit / reference plugins", 1.0, "<=", lambda d: _podman(d["podman_plugins"], "port")),
    # The same static busybox httpd in both containers (runtime_start row b): row (a) runs python's
    # http.server in netkit's container (~70 ms of interpreter start, measured) against busybox in podman's.
    ("`netkit run -d -p` until HTTP / podman", 0.5, "<=", lambda d: _runtime(d["runtime_start_agent"], "ready_same")),
    ("`netkit run --rm --net=none -- true` / podman", 0.4, "<=",
     lambda d: _runtime(d["runtime_start_agent"], "true_none")),
    ("ADD at 500 present / at 0, nftables", 1.2, "<=", lambda d: _growth(d["scale"], "netkit agent, nftables")),
    ("agent memory idle / 32 MiB", 1.0, "<=", lambda d: _memory(d["scale"], "agent_at_start", "VmRSS", 32)),
    ("agent high-water after the 500 / 64 MiB", 1.0, "<=",
     lambda d: _memory(d["scale"], "agent_after_b", "VmHWM", 64)),
    # Issue 17: the resolver against aardvark-dns 1.4 on the same records, and DNS's share of a start.
    ("netkit-dns queries/s / aardvark-dns", 0.5, ">=", lambda d: _dns(d["dns"], "qps")),
    ("netkit-dns median latency / aardvark-dns", 2.0, "<=", lambda d: _dns(d["dns"], "latency")),
    ("netkit-dns ADD (a start with DNS) / 10 ms", 1.0, "<=", lambda d: _dns_add(d["dns"], 10)),
]
DOCUMENTS = ("podman_shape", "podman_plugins", "runtime_start_agent", "scale", "dns")


def evaluate(results: str) -> list[dict[str, Any]]:
    """One record per target: its figure, bound and verdict ("met", "not met", "not measured")."""
    docs = {name: _load(results, name) for name in DOCUMENTS}
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
