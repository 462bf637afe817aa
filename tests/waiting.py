"""Waiting in tests for something that happens in another process: polling with a give-up deadline.

The deadline only stops a hung test; it is not a bound on how long the thing may take (performance
is measured in bench/, never timed here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

PATIENCE = 30.0  # how long a change may take to show before a test gives up (not a figure)


def until(check: Callable[[], T], what: str, patience: float = PATIENCE, interval: float = 0.05) -> T:
    """``check()``'s first truthy value, polled every ``interval`` s; fails the test naming ``what``
    after ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while not (got := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(interval)
    return got
