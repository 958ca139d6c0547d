"""The producer's pure parts: the document a job becomes, durations and payloads as typed
on a command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pulling_agent.cli.options import parse_duration, parse_lines, parse_payload
from pulling_agent.client.enqueue import enqueue_flow, prepare
from pulling_agent.client.jobs import EnqueueError, InvalidJob, Job, build
from pulling_agent.queue.ops import Find, Insert

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


def _drive(flow: Any, replies: dict[type, Any]) -> list[Any]:
    """Run a flow by hand, answering each operation by its type; the operations sent."""
    sent: list[Any] = []
    reply: Any = None
    try:
        while True:
            op = flow.send(reply)
            sent.append(op)
            reply = replies.get(type(op))
    except StopIteration:
        return sent


def test_a_refused_insert_in_a_transaction_raises_at_once_and_says_it_aborted() -> None:
    """Any refused write aborts a MongoDB transaction: the flow stops there (nothing more
    sent: it would fail with NoSuchTransaction) and says so."""
    batch, after, then = prepare([Job({"n": 1}, key="k1"), Job({"n": 2})], "type", None, NOW)
    refusal = {"writeErrors": [{"index": 0, "code": 121, "errmsg": "Document failed validation"}]}
    flow = enqueue_flow(batch, after, then, transaction=True)
    assert isinstance(flow.send(None), Find), "keys are looked up first"
    assert isinstance(flow.send([]), Insert)
    with pytest.raises(EnqueueError, match=r"failed validation.*aborts the transaction"):
        flow.send(refusal)


def test_outside_a_transaction_a_plain_enqueue_is_one_insert() -> None:
    """No promote of the collection's ready documents after a call that made none waiting."""
    batch, after, then = prepare([{"_id": 1}, {"_id": 2}], "type", None, NOW)
    flow = enqueue_flow(batch, after, then)
    assert [type(op) for op in _drive(flow, {})] == [Insert]
