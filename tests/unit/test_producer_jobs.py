"""The producer's pure parts: the document a job becomes, durations and payloads as typed
on a command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pulling_agent.cli.options import parse_duration, parse_lines, parse_payload
from pulling_agent.client.jobs import InvalidJob, Job, build

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("5m", 300), ("2h", 7_200), ("1.5d", 129_600), (" 0 ", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "-5", "5x", "1e9999", "5 m s", "\x1b[2J"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(InvalidJob, match="--delay"):
        parse_duration(text)


def test_payloads_are_extended_json_objects() -> None:
    assert parse_payload('{"at": {"$date": "2026-03-01T12:00:00Z"}}') == {"at": NOW}
    with pytest.raises(InvalidJob, match="line 2"):
        parse_lines(['{"a": 1}', "7"])


def test_a_job_due_now_or_earlier_is_fresh_work() -> None:
    for job in (Job({}, delay=0), Job({}, run_at=NOW - timedelta(days=1)), Job({})):
        assert "available_at" not in build(job, NOW)
    assert build(Job({}, delay=timedelta(hours=1)), NOW)["available_at"] == NOW + timedelta(hours=1)


def test_the_type_goes_in_the_configured_field() -> None:
    doc = build(Job({"kind": "email"}, type="email"), NOW, type_field="kind")
    assert doc["kind"] == "email" and "type" not in doc
