"""``lab test``: run a scenario's reachability checks and render the pass/fail matrix.

Checks run in parallel threads (each probe enters its own namespace); the result of a check is
whether what was observed (reached or not, the right body or not) is what the scenario expects.
"""

from __future__ import annotations

import concurrent.futures
from typing import NamedTuple, Protocol

from netkit import errors
from netkit.lab import probe
from netkit.lab.scenario import Check, split_target

TIMEOUT = 2.0
ATTEMPTS_FOR_OK = 3  # a first SYN can be lost to a neighbour entry still being resolved


class Endpoints(Protocol):
    """How a backend turns scenario references into namespaces, addresses and ports."""

    def netns_of(self, ref: str) -> str: ...

    def address_of(self, ref: str, from_host: str, family: int = 4) -> str: ...

    def published_port(self, host: str, spec: str) -> int: ...

    def resolver_of(self, ref: str) -> str: ...


class Verdict(NamedTuple):
    """One check's outcome."""

    check: Check
    passed: bool
    observed: str  # "ok" or "blocked"
    detail: str


class _Target:
    """Where a check's probes go: a fixed address, or a name looked up afresh before each probe
    (the source container's DNS server rotates the addresses of a shared alias)."""

    def __init__(self, check: Check, ends: Endpoints) -> None:
        self.check, self.path = check, ends.netns_of(check.source)
        source_host = check.source.split("/")[0]
        ref, port = split_target(check.to)
        self.server = ends.resolver_of(check.source) if check.resolve else ""
        self.name = ref if check.resolve else ""
        if check.published:
            self.addr = ends.address_of(check.to, source_host, check.family)
            self.port = ends.published_port(check.to.split("@")[0], check.published)
        else:
            self.addr = "" if check.resolve else ends.address_of(ref, source_host, check.family)
            self.port = int(port or 0)

    def address(self) -> tuple[str, str]:
        """(address, '') or ('', why the name did not resolve)."""
        if not self.name:
            return self.addr, ""
        found, detail = probe.lookup(self.path, self.server, self.name, self.check.family, TIMEOUT)
        return (found[0], "") if found else ("", detail)


def _http_bodies(check: Check, target: _Target) -> tuple[bool, str]:
    """Ask 2 x len(bodies) times (a round-robin balancer shows each backend); reached, what was seen."""
    seen: list[str] = []
    for _ in range(2 * len(check.bodies)):
        addr, _why = target.address()
        if not addr:
            continue
        out = probe.probe(target.path, "http", addr, target.port, TIMEOUT, check.path)
        if out.reached:
            seen.append(out.body)
    missing = [b for b in check.bodies if not any(b in s for s in seen)]
    if not seen:
        return False, "no answer"
    return not missing, f"answers: {', '.join(sorted(set(seen)))}" + (f"; missing {missing}" if missing else "")


def run_check(check: Check, ends: Endpoints) -> Verdict:
    """Probe once (or a few times, when success is expected) and judge."""
    try:
        target = _Target(check, ends)
    except errors.CNIError as exc:
        return Verdict(check, False, "error", exc.msg)
    if check.proto == "dns":
        found, detail = probe.lookup(target.path, target.server, target.name, check.family, TIMEOUT)
        reached = bool(found)
    elif check.proto == "http" and check.bodies:
        reached, detail = _http_bodies(check, target)
    else:
        for _ in range(ATTEMPTS_FOR_OK if check.expect == "ok" else 1):
            addr, why = target.address()
            if not addr:
                reached, detail = False, why
                continue
            out = probe.probe(target.path, check.proto, addr, target.port, TIMEOUT, check.path)
            reached = out.reached and (not check.body or check.body in out.body)
            shown = f"[{addr}]" if ":" in addr and target.port else addr
            detail = f"{shown}{f':{target.port}' if target.port else ''} {out.detail}" + (
                f" {out.body!r}" if out.body else "")
            if reached:
                break
    observed = "ok" if reached else "blocked"
    return Verdict(check, observed == check.expect, observed, detail)


def run_all(checks: list[Check], ends: Endpoints, workers: int = 8) -> list[Verdict]:
    """Every check, in the scenario's order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda c: run_check(c, ends), checks))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def render(verdicts: list[Verdict]) -> str:
    """The per-check list, then a from x to matrix of passed/total cells, then a summary line."""
    rows = [["", "line", "from", "to", "proto", "expect", "seen", "detail"]]
    for v in verdicts:
        c = v.check
        to = c.to + (f" [{c.published}]" if c.published else "")
        proto = c.proto + ("/v6" if c.family == 6 else "")
        rows.append(["PASS" if v.passed else "FAIL", str(c.line), c.source, to, proto, c.expect, v.observed,
                     v.detail])
    sources = list(dict.fromkeys(v.check.source for v in verdicts))
    targets = list(dict.fromkeys(split_target(v.check.to)[0] for v in verdicts))
    cells: dict[tuple[str, str], list[bool]] = {}
    for v in verdicts:
        to = split_target(v.check.to)[0]
        cells.setdefault((v.check.source, to), []).append(v.passed)

    def cell(results: list[bool] | None) -> str:
        if not results:
            return "."
        return f"{sum(results)}/{len(results)}" + ("" if all(results) else " FAIL")

    grid = [["from \\ to", *targets]] + [[s, *(cell(cells.get((s, t))) for t in targets)] for s in sources]
    failed = sum(not v.passed for v in verdicts)
    summary = f"{len(verdicts) - failed} passed, {failed} failed"
    return f"{_table(rows)}\n\nchecks passed, from x to:\n{_table(grid)}\n\n{summary}"
