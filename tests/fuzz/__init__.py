"""Hostile and broken input, property-based: every answer is CNI JSON, nothing is created.

The number of hypothesis examples is modest by default so the suite stays quick; ``NETKIT_FULL=1``
multiplies it (see ``examples``).  Every run is deterministic (derandomized, no example database).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings

from tests.sandbox import FULL



def examples(default: int, full: int) -> int:
    """How many hypothesis examples a property runs: ``full`` with NETKIT_FULL=1, else ``default``."""
    return full if FULL else default


def fuzz_settings(default: int, full: int) -> Any:
    """Hypothesis settings for one property: deterministic, no database, no deadline.

    Sandboxed properties share one sandbox per test function across examples (each example cleans
    up after itself), hence the function-scoped-fixture health check is off.
    """
    return settings(max_examples=examples(default, full), derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large],
                    print_blob=False)
