"""The seed of a random trial: printed, so a failing run can be repeated, and taken back from NETKIT_SEED.

A trial draws every random choice (kill moments, garbage bytes) from ``trial(...).rng``.  Its seed is
new for each run unless ``NETKIT_SEED`` gives one; it is printed (pytest shows a failing test's
output) and is part of the trial's ``str``, for assertion messages::

    NETKIT_SEED=1234567 .venv/bin/python -m pytest tests/faults/test_kill.py

Hypothesis properties (tests/fuzz, tests/agent/test_protocol.py) are derandomized: every run draws the
same examples, so a failure repeats by rerunning; with ``NETKIT_SEED`` they draw from that seed instead.
(Timing still differs from run to run: the same seed repeats the choices, not the machine's load.)
"""

from __future__ import annotations

import os
import random
import secrets
from dataclasses import dataclass, field

ENV = "NETKIT_SEED"


def from_env() -> int | None:
    """The seed ``NETKIT_SEED`` gives, or None."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw, 0)
    except ValueError:
        raise ValueError(f"{ENV} must be an integer, not {raw!r}") from None


@dataclass(frozen=True)
class Trial:
    """A random trial's seed and the generator every choice of it comes from."""

    name: str
    seed: int
    rng: random.Random = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.name} with {ENV}={self.seed}"


def trial(name: str) -> Trial:
    """A seeded generator for the trial ``name``; the seed is printed for a rerun."""
    given = from_env()
    seed = given if given is not None else secrets.randbits(32)
    print(f"{name}: seed {seed} ({'from' if given is not None else 'repeat with'} {ENV}={seed})", flush=True)
    return Trial(name, seed, random.Random(seed))
