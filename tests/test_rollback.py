"""The undo stack for ADD: runs in reverse on failure, never on success, never hides the error."""

from __future__ import annotations

import pytest

from netkit import errors
from netkit.rollback import Rollback


def test_undo_runs_in_reverse_order_on_failure() -> None:
    done: list[str] = []
    with pytest.raises(RuntimeError, match="step 3 failed"):
        with Rollback() as undo:
            for step in ("a", "b", "c"):
                undo.push(done.append, step)
            raise RuntimeError("step 3 failed")
    assert done == ["c", "b", "a"]


def test_undo_passes_all_arguments() -> None:
    seen: list[tuple[object, ...]] = []
    with pytest.raises(ValueError):
        with Rollback() as undo:
            undo.push(lambda *a: seen.append(a), 1, "two", None)
            raise ValueError
    assert seen == [(1, "two", None)]


def test_nothing_is_undone_on_success() -> None:
    done: list[str] = []
    with Rollback() as undo:
        undo.push(done.append, "a")
        undo.push(done.append, "b")
    assert done == []


def test_failing_undo_does_not_hide_the_original_error_and_the_rest_still_run() -> None:
    done: list[str] = []

    def broken() -> None:
        raise OSError("undo failed")

    original = errors.CNIError(errors.KERNEL, "kernel said no")
    with pytest.raises(errors.CNIError) as info:
        with Rollback() as undo:
            undo.push(done.append, "first")
            undo.push(broken)
            undo.push(done.append, "last")
            raise original
    assert info.value is original
    assert info.value.code == errors.KERNEL
    assert done == ["last", "first"]


def test_undo_stack_is_spent_after_the_block() -> None:
    done: list[str] = []
    rb = Rollback()
    with rb:
        rb.push(done.append, "a")
    with pytest.raises(KeyError):
        with rb:
            raise KeyError("x")
    assert done == []  # the successful block's undo did not linger into the failed one


def test_undo_runs_on_base_exceptions_too() -> None:
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with Rollback() as undo:
            undo.push(done.append, "a")
            raise KeyboardInterrupt
    assert done == ["a"]
