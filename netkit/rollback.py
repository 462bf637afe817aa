"""The one undo mechanism for ADD: register each object's removal the moment it is made.

    with Rollback() as undo:
        make_veth(...)
        undo.push(remove_veth, name)
        ...

If the block raises, every registered undo runs in reverse order (each one's own failure is
swallowed, so the original error is what the caller sees); if it completes, nothing is undone.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any, Callable


class Rollback:
    """An undo stack that runs only when the block it guards fails."""

    def __init__(self) -> None:
        self._undo: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def push(self, fn: Callable[..., Any], *args: Any) -> None:
        """Register ``fn(*args)`` to undo the step just taken."""
        self._undo.append((fn, args))

    def __enter__(self) -> "Rollback":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        undo, self._undo = self._undo, []
        if exc_type is None:
            return
        for fn, args in reversed(undo):
            with contextlib.suppress(Exception):
                fn(*args)
