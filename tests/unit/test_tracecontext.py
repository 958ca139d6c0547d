"""The trace context a document carries (queue.tracecontext): written only inside a span,
read back as untrusted input (every hostile value ignored with a reason, never raised)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pulling_agent.client.jobs import Job, build
from pulling_agent.config import LogFormat
from pulling_agent.errors import InvalidJob
from pulling_agent.logs import configure_logging, get_logger
from pulling_agent.queue import tracecontext as tc
from tests.tracing import spans

__all__ = ["spans"]
NOW = datetime(2026, 12, 7, tzinfo=UTC)
GOOD = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_without_a_provider_tracing_is_off_and_nothing_is_written() -> None:
    assert tc.available() and not tc.enabled()
    assert tc.TRACE not in build(Job({"a": 1}), NOW)


def test_a_span_outside_any_provider_writes_nothing(spans: InMemorySpanExporter) -> None:
    assert tc.enabled()
    assert tc.carrier() is None, "no span is active"
    assert tc.TRACE not in build(Job({"a": 1}), NOW)


def test_the_producer_span_is_stored_and_read_back(spans: InMemorySpanExporter) -> None:
    with tc.tracer().start_as_current_span("request") as span:
        doc = build(Job({"a": 1}), NOW)
    stored = doc[tc.TRACE]
    assert set(stored) == {"traceparent"}
    context, problem = tc.extract(stored)
    assert problem is None
    found = tc.span_context(context)
    assert found is not None and found.is_remote
    assert (found.trace_id, found.span_id) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )


def test_tracestate_and_baggage_travel_too(spans: InMemorySpanExporter) -> None:
    from opentelemetry import baggage, context

    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        state = trace.TraceState([("vendor", "value")])
        parent = trace.NonRecordingSpan(
            trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_state=state)
        )
        with trace.use_span(parent):
            stored = tc.carrier()
    finally:
        context.detach(token)
    assert stored == {
        "traceparent": "00-00000000000000000000000000000abc-0000000000000def-00",
        "tracestate": "vendor=value",
        "baggage": "tenant=acme",
    }
    read, problem = tc.extract(stored)
    assert problem is None and baggage.get_baggage("tenant", read) == "acme"


def test_a_payload_may_not_set_the_field() -> None:
    with pytest.raises(InvalidJob, match="trace_context"):
        build(Job({tc.TRACE: {"traceparent": GOOD}}), NOW)


class Raising(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("\x1b[31mboom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


HOSTILE: list[tuple[Any, str]] = [
    ("00-garbage", "not a mapping"),
    (["traceparent", GOOD], "not a mapping"),
    (12, "not a mapping"),
    ({}, "no traceparent"),
    ({"traceparent": 5}, "not a string"),
    ({"traceparent": {"$gt": ""}}, "not a string"),
    ({"traceparent": "x" * 1_000_000}, "1000000 characters"),
    ({"traceparent": GOOD, "tracestate": "x" * 10_000}, "tracestate is 10000"),
    ({"traceparent": GOOD, "baggage": ["a"]}, "baggage is a list"),
    ({"traceparent": "garbage\x1b]0;title\x07"}, "not a W3C trace context"),
    ({"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"}, "not a W3C"),
    ({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01"}, "not a W3C"),
    ({"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "not a W3C"),
    ({"traceparent": GOOD.upper()}, "not a W3C"),
    (Raising(), "cannot be read"),
]


@pytest.mark.parametrize(("value", "why"), HOSTILE)
def test_a_hostile_value_is_ignored_with_a_reason(
    spans: InMemorySpanExporter, value: Any, why: str
) -> None:
    context, problem = tc.extract(value)
    assert context is None
    assert problem is not None and why in problem
    assert len(problem) < 300 and "\x1b" not in problem and "\x07" not in problem


def test_absent_is_not_a_problem() -> None:
    assert tc.extract(None) == (None, None)


def test_log_lines_in_a_span_carry_its_ids(spans: InMemorySpanExporter) -> None:
    out = io.StringIO()
    configure_logging("INFO", LogFormat.JSON, stream=out)
    try:
        log = get_logger(component="test")
        log.info("outside")
        with tc.tracer().start_as_current_span("work") as span:
            log.info("inside")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()
    outside, inside = lines
    assert "trace_id" not in outside and "span_id" not in outside
    ids = span.get_span_context()
    assert inside["trace_id"] == format(ids.trace_id, "032x")
    assert inside["span_id"] == format(ids.span_id, "016x")
