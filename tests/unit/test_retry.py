from datetime import UTC, datetime

import pytest

from pulling_agent.queue.model import Claim, OutcomeKind
from pulling_agent.queue.retry import (
    ERROR_HISTORY,
    RetryPolicy,
    error_info,
    failure_outcome,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_delay_doubles_then_caps_with_equal_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=1, max_seconds=8)
    assert [policy.delay(n, 0.0) for n in range(1, 6)] == [0.5, 1, 2, 4, 4]
    assert [policy.delay(n, 0.999) for n in range(1, 6)] == pytest.approx(
        [0.9995, 1.999, 3.998, 7.996, 7.996]
    )


def test_delay_never_overflows_for_huge_attempt_numbers() -> None:
    assert RetryPolicy(1000, 5, 600).delay(10_000, 0.5) == 450


def _claim(attempts: int, errors: object = None) -> Claim:
    doc = {"_id": 1, "status": "processing"}
    if errors is not None:
        doc["errors"] = errors
    return Claim(1, "tok", attempts, doc)


def test_failure_before_last_attempt_is_retried_later() -> None:
    policy = RetryPolicy(3, 10, 100)
    out = failure_outcome(_claim(1), error_info(ValueError("x"), NOW, 1), policy, NOW, 0.0)
    assert out.kind is OutcomeKind.RETRY
    assert out.available_at is not None and (out.available_at - NOW).total_seconds() == 5
    assert out.error is not None and out.error.type == "ValueError"


def test_failure_on_last_attempt_goes_to_dead_letter_with_traceback() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        info = error_info(exc, NOW, 3)
    out = failure_outcome(_claim(3), info, RetryPolicy(3, 10, 100), NOW, 0.0)
    assert out.kind is OutcomeKind.FAILED
    assert out.available_at is None
    assert "KeyError" in info.traceback and "raise KeyError" in info.traceback


def test_error_history_is_bounded_and_tolerates_garbage() -> None:
    old = [{"type": "E", "n": n} for n in range(20)] + ["not a dict"]
    out = failure_outcome(
        _claim(1, old), error_info(RuntimeError("new"), NOW, 1), RetryPolicy(5, 1, 1), NOW, 0
    )
    assert len(out.errors) == ERROR_HISTORY
    assert out.errors[-1]["message"] == "new"
    assert out.errors[0]["n"] == 20 - (ERROR_HISTORY - 1)
    garbage = failure_outcome(
        _claim(1, "junk"), error_info(RuntimeError("x"), NOW, 1), RetryPolicy(5, 1, 1), NOW, 0
    )
    assert len(garbage.errors) == 1
