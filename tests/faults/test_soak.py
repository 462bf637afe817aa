"""Soak: ADD/CHECK/DEL cycles with published ports and masquerade, GC mixed in, through one warm agent.

Default: 25 cycles per firewall backend, ``NETKIT_FULL=1``: 2,000.  Checked: nothing of any
attachment left (every 250 cycles and at the end), the agent alive with no more descriptors than
after warm-up, a fresh attachment working.  Printed, not checked: the agent's memory and the cycle
times of the first and last 100 cycles (a loaded machine moves both; bench/scale.py part (d)
measures them).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import pytest

from tests.faults.common import GATEWAY, attach_and_prove, detach_clean, full_conf, gc_conf, leftovers
from tests.faults.conftest import FULL, Agent
from tests.sandbox import Sandbox

# NETKIT_SOAK_CYCLES overrides the count (to study the agent's growth without a full run).
CYCLES = int(os.environ.get("NETKIT_SOAK_CYCLES") or (2000 if FULL else 25))
WARM = 100 if CYCLES >= 1000 else 10  # cycles before the baseline is taken: lazy imports, caches, first tables


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _ms(durations: list[float]) -> str:
    return f"{statistics.median(durations) * 1000:.1f}"


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_soak_cycles_leak_nothing_and_the_agent_keeps_its_descriptors(
        inproc: Sandbox, agents: Callable[..., Agent], backend: str) -> None:
    box = inproc
    box.firewall = backend
    agent = agents()
    box.agent_socket = agent.path
    conf = full_conf(box)
    c = box.container()
    per_op: dict[str, list[float]] = {"ADD": [], "CHECK": [], "DEL": []}

    def cycle(i: int) -> float:
        """One ADD/CHECK(/GC/CHECK)/DEL cycle; its duration."""
        cid = f"soak{i}"
        start = time.monotonic()
        rc, result = box.call("netkit-bridge", "ADD", conf, c, container_id=cid)
        assert rc == 0, (i, result)
        added = time.monotonic()
        rc, out = box.call("netkit-bridge", "CHECK", dict(conf, prevResult=result), c, container_id=cid)
        assert (rc, out) == (0, None), i
        checked = time.monotonic()
        if i % 10 == 9:
            # GC keeping the live attachment must keep it whole; then DEL removes it as usual.
            assert box.call("netkit-bridge", "GC", gc_conf(conf, [(cid, "eth0")])) == (0, None), i
            rc, out = box.call("netkit-bridge", "CHECK", dict(conf, prevResult=result), c, container_id=cid)
            assert (rc, out) == (0, None), (i, "GC took part of a valid attachment")
        deleting = time.monotonic()
        assert box.call("netkit-bridge", "DEL", conf, c, container_id=cid) == (0, None), i
        end = time.monotonic()
        per_op["ADD"].append(added - start)
        per_op["CHECK"].append(checked - added)
        per_op["DEL"].append(end - deleting)
        return end - start

    durations: list[float] = []
    baseline: tuple[int, int] = (0, 0)
    rss: list[int] = []
    for i in range(CYCLES):
        durations.append(cycle(i))
        if i == WARM - 1:
            baseline = (_fds(agent.pid), _rss_kib(agent.pid))
        if i % 250 == 249:
            assert leftovers(box, [c]) == [], i
            rss.append(_rss_kib(agent.pid))
    end = (_fds(agent.pid), _rss_kib(agent.pid))
    first, last = statistics.median(durations[:100]), statistics.median(durations[-100:])
    print(f"\nsoak {backend}: {CYCLES} cycles, agent fds {baseline[0]} -> {end[0]}, RSS {baseline[1]} -> {end[1]} KiB "
          f"(every 250 cycles: {rss}), cycle median first 100 {first * 1000:.1f} ms, last 100 {last * 1000:.1f} ms; "
          + ", ".join(f"{op} {_ms(t[:100])} -> {_ms(t[-100:])} ms" for op, t in per_op.items()))
    assert leftovers(box, [c]) == []
    assert agent.alive()
    assert end[0] <= baseline[0] + 2, f"agent descriptors grew {baseline[0]} -> {end[0]}"
    # And the host still works: a fresh attachment reaches its gateway.
    attach_and_prove(box, conf, c)
    assert c.ping(GATEWAY)
    detach_clean(box, conf, c)
