"""The traffic checks' own rules (tests/reach.py): positives retry, negatives need a control."""

from __future__ import annotations

import pytest

from tests import reach


def _tries(*answers: str | None) -> tuple[list[int], "callable"]:  # type: ignore[valid-type]
    calls: list[int] = []

    def once() -> str | None:
        calls.append(1)
        return answers[len(calls) - 1]

    return calls, once


def test_a_positive_check_survives_lost_tries_and_stops_at_the_first_answer() -> None:
    calls, once = _tries(None, None, "A 10.0.0.2", "never asked")
    assert reach.first_answer(once) == "A 10.0.0.2" and len(calls) == 3


def test_a_positive_check_fails_when_every_try_is_lost() -> None:
    calls, once = _tries(None, None, None)
    assert reach.first_answer(once) is None and len(calls) == reach.TRIES


def test_a_negative_check_tries_once_and_holds_with_a_control() -> None:
    calls, once = _tries(None, "never asked")
    assert reach.unanswered(once, reach.Answer("A 10.0.0.2", "/run/netns/x"), "probe", "/run/netns/x")
    assert len(calls) == 1


def test_a_negative_check_without_a_working_control_proves_nothing() -> None:
    for control in (None, lambda: None):
        with pytest.raises(AssertionError, match="control got none"):
            reach.unanswered(lambda: None, control, "probe")


def test_a_negative_checks_control_must_be_the_same_clients() -> None:
    with pytest.raises(AssertionError, match="not to this client"):
        reach.unanswered(lambda: None, reach.Answer("A", "/run/netns/other"), "probe", "/run/netns/x")


def test_a_control_run_after_the_try_sees_the_path_the_try_used() -> None:
    order: list[str] = []

    def once() -> None:
        order.append("try")

    def control() -> str:
        order.append("control")  # e.g. removes the guard rule, then asks again
        return "A"

    assert reach.unanswered(once, control, "probe") and order == ["try", "control"]


def test_a_negative_check_that_gets_an_answer_says_what_answered() -> None:
    with pytest.raises(AssertionError, match="expected no answer, got 'A 10.0.0.2'"):
        reach.unanswered(lambda: "A 10.0.0.2", "B", "probe")
