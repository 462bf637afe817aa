"""Hostile and broken input, property-based: every answer is CNI JSON, nothing is created.

The number of hypothesis examples is modest by default so the suite stays quick; ``NETKIT_FULL=1``
multiplies it (see ``examples``).  Every run is deterministic (derandomized, no example database): a
failure repeats by rerunning.  ``NETKIT_SEED=N`` draws the examples from seed N instead, to explore
other inputs (tests/seeds.py); a failure under it repeats with the same N.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import HealthCheck, seed, settings

from tests import seeds
from tests.sandbox import FULL



def examples(default: int, full: int) -> int:
    """How many hypothesis examples a property runs: ``full`` with NETKIT_FULL=1, else ``default``."""
    return full if FULL else default


def seeded(test: Callable[..., Any]) -> Callable[..., Any]:
    """Draw ``test``'s examples from ``NETKIT_SEED`` when it is set (the test's settings then must not
    derandomize: see ``derandomize``)."""
    given_seed = seeds.from_env()
    return test if given_seed is None else seed(given_seed)(test)


def derandomize() -> bool:
    """Whether hypothesis derives its examples from the test itself: unless ``NETKIT_SEED`` is set."""
    return seeds.from_env() is None


def fuzz_settings(default: int, full: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hypothesis settings for one property: deterministic (or ``NETKIT_SEED``'s), no database, no deadline.

    Sandboxed properties share one sandbox per test function across examples (each example cleans
    up after itself), hence the function-scoped-fixture health check is off.
    """
    chosen = settings(max_examples=examples(default, full), derandomize=derandomize(), database=None, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large],
                      print_blob=False)
    return lambda test: seeded(chosen(test))
