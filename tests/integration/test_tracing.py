"""Traces across the queue, over the wire: a producer's span, enqueue (the real driver on
nx-27017), an agent claiming and running the handler, with OpenTelemetry's SDK and its
in-memory exporter as the tracer provider (docs/OBSERVABILITY.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import Node, build_node
from pulling_agent.client import Job, aio
from pulling_agent.queue import tracecontext as tc
from pulling_agent.runtime.state import AgentState
from pulling_agent.runtime.tracing import WAIT
from tests.conftest import async_wait_until, invoke, make_settings
from tests.tracing import attrs, named, reset_trace_globals, spans

__all__ = ["spans"]
Client = AsyncMongoClient[dict[str, Any]]
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


@pytest.fixture
async def run_agent(
    client: Client, mongo_uri: str, db_name: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    started: list[tuple[Node, asyncio.Task[int]]] = []

    async def _start(handler: Handler, **overrides: Any) -> Node:
        settings = make_settings(
            tmp_path, mongodb_uri=mongo_uri, mongodb_database=db_name, **overrides
        )
        node = build_node(settings, client, handler)
        started.append((node, asyncio.create_task(node.agent.run(install_signals=False))))
        await async_wait_until(lambda: node.agent.state is AgentState.RUNNING)
        return node

    yield _start
    for node, task in started:
        node.agent.request_shutdown("test over")
        async with asyncio.timeout(30):
            await task
    await client.drop_database(db_name)


def _ids(span: ReadableSpan | trace.Span) -> tuple[int, int]:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id, context.span_id


async def _done(client: Client, db_name: str, count: int) -> None:
    work = client[db_name]["work"]

    async def finished() -> bool:
        ended = {"status": {"$in": ["processed", "failed"]}}
        return await work.count_documents(ended) >= count

    await async_wait_until(finished, what=f"{count} documents done")


async def test_each_attempt_is_a_child_of_the_producer_span_in_one_trace(
    spans: InMemorySpanExporter,
    run_agent: Callable[..., Awaitable[Node]],
    client: Client,
    db_name: str,
) -> None:
    """A failed attempt, its retry, the handler's own span inside the second: one trace."""
    calls = 0

    async def handler(doc: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("smtp down")
        with tc.tracer().start_as_current_span("send mail"):
            return "sent"

    await run_agent(handler)
    work = client[db_name]["work"]
    with tc.tracer().start_as_current_span("POST /signup", kind=SpanKind.SERVER) as request:
        sent = await aio.enqueue(work, {"to": "a@example.com"}, type="email")
    await _done(client, db_name, 1)
    trace_id, request_id = _ids(request)
    (send,) = named(spans, "send work")  # the enqueue call: the document's creation context
    assert send.kind is SpanKind.PRODUCER and attrs(send)["messaging.batch.message_count"] == 1
    assert send.parent is not None and send.parent.span_id == request_id
    assert attrs(send)["messaging.operation.type"] == "send"
    request_id = _ids(send)[1]
    attempts = sorted(named(spans, "process "), key=lambda s: attrs(s)["pulling_agent.attempt"])
    assert [s.name for s in attempts] == ["process email", "process email"]
    for n, span in enumerate(attempts, start=1):
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None and (span.parent.trace_id, span.parent.span_id) == (
            trace_id,
            request_id,
        ), "the producer's send span is the parent"
        assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
            (trace_id, request_id)
        ]
        attributes = attrs(span)
        assert attributes["messaging.system"] == "pulling_agent"
        assert attributes["messaging.destination.name"] == "work"
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.message.id"] == str(sent.id)
        assert attributes["pulling_agent.attempt"] == n
        assert isinstance(attributes[WAIT], float) and attributes[WAIT] >= 0
    failed, succeeded = attempts
    assert attrs(failed)["pulling_agent.outcome"] == "retry"
    assert attrs(failed)["error.type"] == "ConnectionError"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "smtp down"
    assert attrs(succeeded)["pulling_agent.outcome"] == "processed"
    assert succeeded.status.status_code is StatusCode.UNSET
    (mail,) = named(spans, "send mail")
    assert mail.parent is not None and mail.parent.span_id == _ids(succeeded)[1]
    assert _ids(mail)[0] == trace_id
    stored = await work.find_one({"_id": sent.id})
    assert stored is not None and stored[tc.TRACE]["traceparent"].split("-")[1:3] == [
        format(trace_id, "032x"),
        format(request_id, "016x"),
    ]


async def test_claims_and_outcome_writes_are_spans_linked_to_the_work(
    spans: InMemorySpanExporter,
    run_agent: Callable[..., Awaitable[Node]],
    client: Client,
    db_name: str,
) -> None:
    async def handler(doc: dict[str, Any]) -> None:
        return None

    work = client[db_name]["work"]
    with tc.tracer().start_as_current_span("import") as producer:
        await aio.enqueue_many(work, [{"n": n} for n in range(5)])
    await run_agent(handler)
    await _done(client, db_name, 5)
    await async_wait_until(lambda: len(named(spans, "settle ")) >= 1, what="a settle span")
    (send,) = named(spans, "send work")
    assert send.parent is not None and send.parent.span_id == _ids(producer)[1]
    assert attrs(send)["messaging.batch.message_count"] == 5
    producer_ctx = _ids(send)
    receives = named(spans, "receive work")
    linked = [(link.context.trace_id, link.context.span_id) for s in receives for link in s.links]
    assert linked == [producer_ctx] * 5, "every claimed document is linked to its producer"
    assert sum(attrs(s)["messaging.batch.message_count"] for s in receives) == 5
    assert all(s.kind is SpanKind.CLIENT and s.parent is None for s in receives)
    processes = {_ids(s) for s in named(spans, "process ")}
    assert len(processes) == 5
    settles = named(spans, "settle work")
    written = {(link.context.trace_id, link.context.span_id) for s in settles for link in s.links}
    assert written == processes, "each outcome write links to the attempts it carries"
    assert all(attrs(s)["messaging.operation.type"] == "settle" for s in settles)


HOSTILE: list[Any] = [
    "00-garbage",
    {"traceparent": "x" * 1_000_000},
    {"traceparent": 12},
    {"traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]},
    {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
    {"tracestate": "a=b"},
    [1, 2, 3],
]


async def test_a_hostile_trace_context_is_ignored_logged_and_never_breaks_the_handler(
    spans: InMemorySpanExporter,
    run_agent: Callable[..., Awaitable[Node]],
    client: Client,
    db_name: str,
) -> None:
    ran: list[Any] = []

    async def handler(doc: dict[str, Any]) -> None:
        ran.append(doc["_id"])

    work = client[db_name]["work"]
    docs = [
        {"_id": n, "status": "pending", "attempts": 0, tc.TRACE: value}
        for n, value in enumerate(HOSTILE)
    ]
    await work.insert_many(docs)
    with structlog.testing.capture_logs() as logs:
        await run_agent(handler)
        await _done(client, db_name, len(HOSTILE))
    assert sorted(ran) == list(range(len(HOSTILE))), "every handler ran, once"
    statuses = {d["status"] async for d in work.find({})}
    assert statuses == {"processed"}
    ignored = [e for e in logs if e.get("action") == "trace.context_ignored"]
    assert sorted(e["doc_id"] for e in ignored) == [str(n) for n in range(len(HOSTILE))]
    assert all(len(e["reason"]) < 300 for e in ignored), "a 1 MB value is not logged whole"
    processes = named(spans, "process ")
    assert len(processes) == len(HOSTILE)
    assert all(s.parent is None and not s.links for s in processes), "a trace of its own"


async def test_without_a_provider_no_span_and_no_field(
    run_agent: Callable[..., Awaitable[Node]], client: Client, db_name: str
) -> None:
    assert not tc.enabled()

    async def handler(doc: dict[str, Any]) -> None:
        assert not trace.get_current_span().get_span_context().is_valid

    work = client[db_name]["work"]
    with trace.get_tracer("test").start_as_current_span("no provider"):
        sent = await aio.enqueue(work, {"n": 1})
    await run_agent(handler)
    await _done(client, db_name, 1)
    stored = await work.find_one({"_id": sent.id})
    assert stored is not None and tc.TRACE not in stored and stored["status"] == "processed"


async def test_a_then_job_carries_the_producer_span_like_its_batch(
    spans: InMemorySpanExporter, client: Client, db_name: str
) -> None:
    work = client[db_name]["work"]
    with tc.tracer().start_as_current_span("nightly export") as producer:
        batch = await aio.enqueue_many(work, [{"n": 1}, {"n": 2}], then=Job({"report": True}))
    (send,) = named(spans, "send work")
    assert send.parent is not None and send.parent.span_id == _ids(producer)[1]
    assert attrs(send)["messaging.batch.message_count"] == 3, "2 members and the then job"
    ids = send.get_span_context()
    assert ids is not None
    expected = f"00-{ids.trace_id:032x}-{ids.span_id:016x}"
    then = await work.find_one({"_id": batch.then.id})
    members = await work.find({"n": {"$exists": True}}).to_list()
    assert then is not None and len(members) == 2
    assert {d[tc.TRACE]["traceparent"][:-3] for d in [then, *members]} == {expected}
    await client.drop_database(db_name)


def test_the_command_line_enqueues_inside_the_trace_it_is_given(
    cli_env: dict[str, str | None], work: Any
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ran = invoke({**cli_env, "TRACEPARENT": parent}, "enqueue", '{"n": 1}')
    assert ran.returncode == 0, ran.stderr
    assert work.find_one({"n": 1})[tc.TRACE] == {"traceparent": parent}


@pytest.mark.parametrize(
    "bad", ["garbage", "x" * 100_000, "00-" + "0" * 32 + "-b7ad6b7169203331-01"]
)
def test_a_bad_traceparent_in_the_environment_is_exit_2_and_nothing_written(
    cli_env: dict[str, str | None], work: Any, bad: str
) -> None:
    ran = invoke({**cli_env, "TRACEPARENT": bad}, "enqueue", '{"n": 1}')
    assert ran.returncode == 2
    (line,) = ran.stderr.splitlines()
    assert line.startswith("pulling-agent: TRACEPARENT ") and "unset TRACEPARENT" in line
    assert len(line) < 500
    assert work.count_documents({}) == 0


async def test_an_error_never_stores_or_exports_the_agents_secrets(
    spans: InMemorySpanExporter,
    run_agent: Callable[..., Awaitable[Node]],
    client: Client,
    db_name: str,
) -> None:
    token = "tok-3f9a1c77e2b54d0e9a8b"

    async def handler(doc: dict[str, Any]) -> None:
        raise RuntimeError(f"rejected Authorization: Bearer {token}")

    await run_agent(handler, api_tokens=f"ops:{token}", max_attempts=1)
    await client[db_name]["work"].insert_one({"_id": "x", "status": "pending", "attempts": 0})
    await _done(client, db_name, 1)
    (attempt,) = named(spans, "process ")
    assert attempt.status.description == "rejected Authorization: Bearer ***"
    exported = [s.to_json() for s in spans.get_finished_spans()]
    assert not [s for s in exported if token in s]
    stored = await client[db_name]["work"].find_one({"_id": "x"})
    assert stored is not None and stored["status"] == "failed"
    assert stored["error"]["message"] == "rejected Authorization: Bearer ***"
    assert "Bearer ***" in stored["error"]["traceback"]
    assert token not in repr(stored), "not in error, errors or anywhere in the document"


class Faulty(SpanProcessor):
    """A user's span processor that raises where it is told to."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "on_start":
            raise RuntimeError("processor broken at start")

    def on_end(self, span: Any) -> None:
        if self.where == "on_end":
            raise RuntimeError("processor broken at end")


@pytest.mark.parametrize("where", ["on_start", "on_end"])
async def test_a_faulty_tracing_set_up_never_stops_the_work(
    run_agent: Callable[..., Awaitable[Node]], client: Client, db_name: str, where: str
) -> None:
    """Every span fails (to start, or to end): documents are enqueued and processed all
    the same, and the failure is logged once."""
    provider = TracerProvider()
    provider.add_span_processor(Faulty(where))
    reset_trace_globals()
    trace.set_tracer_provider(provider)
    tc._reported.clear()
    calls: list[Any] = []

    async def handler(doc: dict[str, Any]) -> str:
        calls.append(doc["n"])
        return "done"

    try:
        with structlog.testing.capture_logs() as logs:
            work = client[db_name]["work"]
            await aio.enqueue_many(work, [{"n": n} for n in range(5)])
            await run_agent(handler)
            await _done(client, db_name, 5)
    finally:
        reset_trace_globals()
    assert sorted(calls) == list(range(5)), "each handler ran once"
    assert {d["status"] async for d in work.find({})} == {"processed"}
    failed = [e for e in logs if e.get("action") == "trace.failed"]
    assert len(failed) == 1 and f"processor broken at {where[3:]}" in failed[0]["error"]
