"""Helpers shared by the benchmarks: commands as argument lists, namespaces, statistics.

The scripts run as ``python bench/NAME.py``, so this directory is on sys.path: ``import benchlib``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
from typing import Any

EXEC_TIMEOUT_S = 120  # a ceiling, not an expectation


def run(argv: list[str], timeout: float = EXEC_TIMEOUT_S, **kw: Any) -> subprocess.CompletedProcess[str]:
    """A command as an argument list (never a shell); the caller checks the status."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """iproute2 with an argument list (never a shell); the caller checks the status."""
    return run(["ip", *args])


def netns_names() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def root_links() -> dict[str, str]:
    """Links of the root namespace: name -> kind (read only)."""
    out = ip("-j", "-d", "link", "show").stdout
    return {link["ifname"]: link.get("linkinfo", {}).get("info_kind", "")
            for link in json.loads(out or "[]")}


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": pct(values, 0.95), "min": min(values),
            "max": max(values), "mean": statistics.fmean(values), "n": len(values)}


def processes_of_run(tmp: str, sandbox_inodes: set[int]) -> dict[int, str]:
    """pid -> command line of the processes a run made: command line, cwd or root in its temp dir,
    or living in one of its sandbox network namespaces (inode numbers)."""
    found = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        hit = bool(tmp) and tmp in cmd
        for link in ("cwd", "root"):
            with contextlib.suppress(OSError):
                hit = hit or bool(tmp) and os.readlink(f"/proc/{pid}/{link}").startswith(tmp)
        with contextlib.suppress(OSError):
            hit = hit or os.stat(f"/proc/{pid}/ns/net").st_ino in sandbox_inodes
        if hit:
            found[pid] = cmd or "?"
    return found
