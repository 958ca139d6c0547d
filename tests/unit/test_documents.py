"""The rules for agent-owned fields, and what ``doctor`` makes of every bad shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pulling_agent.encoding import parse_time
from pulling_agent.queue.doctor import examine_documents
from pulling_agent.queue.documents import (
    check_attempts,
    check_available_at,
    diagnose,
    rejection_reason,
    type_name,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, 0, 3, 2.0, 1_000_000])
def test_usable_attempts(value: Any) -> None:
    assert check_attempts({"attempts": value}) is None


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("3", "string"),
        (True, "bool"),
        (2**63 - 1, "long"),
        (1e19, "double"),
        (-1, "int"),
        (2.5, "double"),
        (float("nan"), "double"),
        ([1], "array"),
        ({"$numberInt": "1"}, "object"),
    ],
)
def test_unusable_attempts_name_the_field_and_the_type(value: Any, kind: str) -> None:
    problem = check_attempts({"attempts": value})
    assert problem is not None
    assert (problem.field, problem.value_type) == ("attempts", kind)
    assert "attempts" in problem.fix


def test_messages_stay_short_and_inert_whatever_the_value() -> None:
    problem = check_attempts({"attempts": "\x1b]0;pwned\x07" + "x" * 10_000})
    assert problem is not None
    assert "\x1b" not in problem.reason and "\x07" not in problem.reason
    assert len(problem.reason) < 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23 10:00:00.123000", datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)),
        (datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC)),
        ("soon", None),
        ("2026-13-45", None),
        (17, None),
        ("9" * 1000, None),
    ],
)
def test_times_may_be_dates_or_iso_strings(value: Any, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_available_at_problems() -> None:
    assert check_available_at({}) is None
    assert check_available_at({"available_at": "2026-01-01T00:00:00+02:00"}) is None
    problem = check_available_at({"available_at": "soon"})
    assert problem is not None and problem.field == "available_at"


def test_rejection_reason_prefers_a_known_field_and_quotes_the_error_otherwise() -> None:
    assert rejection_reason(ValueError("x"), {"attempts": "3"}).field == "attempts"
    unknown = rejection_reason(OverflowError("int too big\nsecond line"), None)
    assert unknown.field == "document" and "\n" not in unknown.reason


def test_type_names() -> None:
    values: list[Any] = [None, True, 1, 2**40, 1.5, "s", {}, []]
    assert [type_name(v) for v in values] == [
        "null", "bool", "int", "long", "double", "string", "object", "array",
    ]  # fmt: skip


EVERY_BAD_SHAPE: list[dict[str, Any]] = [
    {"_id": "no-status"},
    {"_id": "typo", "status": "Pending"},
    {"_id": "status-number", "status": 1},
    {"_id": "attempts-string", "status": "pending", "attempts": "3"},
    {"_id": "attempts-huge", "status": "pending", "attempts": 2**63 - 1},
    {"_id": "attempts-float", "status": "pending", "attempts": 1e19},
    {"_id": "available-soon", "status": "pending", "available_at": "soon"},
    {
        "_id": "lease-forever",
        "status": "processing",
        "lease": {"token": "t", "expires_at": NOW + timedelta(days=3650)},
    },
]
FINE: list[dict[str, Any]] = [
    {"_id": "fresh", "status": "pending"},
    {"_id": "retry", "status": "pending", "attempts": 2, "available_at": NOW},
    {"_id": "iso", "status": "pending", "available_at": "2026-11-23T13:00:00Z"},
    {"_id": "orphan", "status": "processing"},  # recovered by the expiry sweep
    {"_id": "done", "status": "processed", "attempts": "whatever"},
    {"_id": "dead", "status": "failed"},
]


def test_doctor_finds_every_bad_shape_and_nothing_else() -> None:
    result = examine_documents([*EVERY_BAD_SHAPE, *FINE], NOW, 5, limit=100)
    assert [f.doc_id for f in result.findings] == [d["_id"] for d in EVERY_BAD_SHAPE]
    assert (result.scanned, result.found) == (14, len(EVERY_BAD_SHAPE))
    assert result.by_field == {"status": 3, "attempts": 3, "available_at": 1, "lease.expires_at": 1}
    for finding in result.findings:
        assert all(p.fix for p in finding.problems)


def test_doctor_lists_up_to_the_limit_but_counts_all() -> None:
    result = examine_documents(EVERY_BAD_SHAPE, NOW, 5, limit=2)
    assert len(result.findings) == 2 and result.found == len(EVERY_BAD_SHAPE)
    assert diagnose({"status": "processed"}, NOW, 5) == []
