"""The handler-facing API over a running agent: the context, explicit outcomes, progress."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pulling_agent import Cancel, Context, Fail, Retry, Skip
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.runtime.handlers import HandlerRunner
from pulling_agent.work import accepts_context, idempotency_key
from tests.conftest import async_wait_until
from tests.unit.test_agent import Running, pending, start, statuses

__all__ = ["start"]


async def test_a_two_parameter_handler_gets_the_context(start: Callable[..., Running]) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(doc: dict[str, Any], ctx: Context) -> None:
        seen.append(
            {
                "attempt": ctx.attempt,
                "max": ctx.max_attempts,
                "agent": ctx.agent_id,
                "token": ctx.lease_token,
                "key": ctx.idempotency_key,
                "deadline": ctx.deadline,
            }
        )
        ctx.log.info("working")
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")

    store = MemoryWorkStore(pending(1))
    run = start(store, HandlerRunner(handler, 1, 30), max_attempts=3, handler_timeout=30)
    await async_wait_until(lambda: statuses(store) == {"processed": 1})
    await run.stop()
    first, second = seen
    assert (first["attempt"], second["attempt"], first["max"]) == (1, 2, 3)
    assert first["agent"] == "agent-test" and first["token"] != second["token"]
    assert first["key"] == second["key"] == idempotency_key("db.work", 1), "stable per document"
    assert isinstance(first["deadline"], datetime)


def test_one_parameter_handlers_keep_working_and_signatures_are_read() -> None:
    def one(doc: dict[str, Any]) -> None: ...
    def two(doc: dict[str, Any], ctx: Context) -> None: ...
    def star(*args: Any) -> None: ...
    def keyword_only(doc: dict[str, Any], *, ctx: Context | None = None) -> None: ...

    assert [accepts_context(f) for f in (one, two, star, keyword_only)] == [
        False,
        True,
        True,
        False,
    ]


async def test_retry_runs_later_without_consuming_an_attempt(start: Callable[..., Running]) -> None:
    async def handler(doc: dict[str, Any], ctx: Context) -> None:
        raise Retry(after=3600, reason="quota")

    store = MemoryWorkStore(pending(1))
    run = start(store, handler, max_attempts=1)
    await async_wait_until(lambda: statuses(store) == {"pending": 1})
    await async_wait_until(lambda: run.agent.pipeline.counters.rescheduled == 1)
    await run.stop()
    doc = store.get(1)
    assert doc["attempts"] == 0, "not consumed: MAX_ATTEMPTS=1 would dead-letter otherwise"
    assert "error" not in doc
    assert doc["available_at"] - datetime.now(UTC) > timedelta(minutes=59)


async def test_a_recorded_retry_keeps_the_reason(start: Callable[..., Running]) -> None:
    async def handler(doc: dict[str, Any]) -> None:
        raise Retry(timedelta(hours=1), "upstream 503", record=True)

    store = MemoryWorkStore(pending(1))
    run = start(store, handler)
    await async_wait_until(lambda: "error" in store.get(1))
    await run.stop()
    assert store.get(1)["error"]["type"] == "Retry"
    assert store.get(1)["error"]["message"] == "upstream 503"


async def test_fail_goes_straight_to_the_dead_letter(start: Callable[..., Running]) -> None:
    async def handler(doc: dict[str, Any]) -> None:
        raise Fail("invalid address")

    store = MemoryWorkStore(pending(1))
    run = start(store, handler, max_attempts=5)
    await async_wait_until(lambda: statuses(store) == {"failed": 1})
    await run.stop()
    doc = store.get(1)
    assert doc["attempts"] == 1
    assert (doc["error"]["type"], doc["error"]["message"]) == ("Fail", "invalid address")


@pytest.mark.parametrize("outcome", [Skip, Cancel])
async def test_skip_and_cancel_end_as_cancelled(
    start: Callable[..., Running], outcome: type[Skip]
) -> None:
    def handler(doc: dict[str, Any], ctx: Context) -> None:  # sync, in the thread pool
        raise outcome("duplicate")

    runner = HandlerRunner(handler, 1, None)
    store = MemoryWorkStore(pending(2))
    run = start(store, runner)
    try:
        await async_wait_until(lambda: statuses(store) == {"cancelled": 2})
        assert store.get(1)["cancel_reason"] == "duplicate"
        assert run.agent.pipeline.counters.cancelled == 2
        assert await run.stop() == 0
    finally:
        runner.close()


async def test_progress_is_written_with_the_next_renewal(start: Callable[..., Running]) -> None:
    release = threading.Event()
    too_big: list[str] = []

    def handler(doc: dict[str, Any], ctx: Context) -> None:
        ctx.set_progress({"step": 1})
        ctx.set_progress({"step": 2})  # the latest wins
        try:
            ctx.set_progress("x" * 5_000)
        except ValueError as exc:
            too_big.append(str(exc))
        release.wait(30)

    runner = HandlerRunner(handler, 1, None)
    store = MemoryWorkStore(pending(1))
    run = start(store, runner, lease_seconds=1)
    try:
        await async_wait_until(lambda: store.get(1).get("progress") == {"step": 2})
        renewals = store.calls.count("renew")
        assert too_big and "1024" in too_big[0]
        release.set()
        await async_wait_until(lambda: statuses(store) == {"processed": 1})
        assert renewals >= 1
        assert await run.stop() == 0
    finally:
        release.set()
        runner.close()


async def test_async_progress(start: Callable[..., Running]) -> None:
    gate = asyncio.Event()

    async def handler(doc: dict[str, Any], ctx: Context) -> None:
        await ctx.progress(0.5)
        await gate.wait()

    store = MemoryWorkStore(pending(1))
    run = start(store, handler, lease_seconds=1)
    await async_wait_until(lambda: store.get(1).get("progress") == 0.5)
    gate.set()
    await async_wait_until(lambda: statuses(store) == {"processed": 1})
    await run.stop()


async def test_a_running_async_handler_is_cancelled_at_the_next_renewal(
    start: Callable[..., Running],
) -> None:
    cancelled: list[int] = []
    blocked = asyncio.Event()

    async def handler(doc: dict[str, Any]) -> None:
        if doc["n"] == 11:
            raise asyncio.CancelledError  # its own: fails the document, not the worker
        if doc["n"] == 0:
            blocked.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(doc["n"])
                raise

    store = MemoryWorkStore(pending(1))
    run = start(store, handler, lease_seconds=1, concurrency=1, max_attempts=1)
    await asyncio.wait_for(blocked.wait(), 10)
    result = await store.cancel([1], "ops", datetime.now(UTC))
    assert result.requested == [1]
    await async_wait_until(lambda: statuses(store) == {"cancelled": 1})
    assert cancelled == [0]
    assert "request" in store.get(1)["cancel_reason"]
    store.insert([{"status": "pending", "n": 10 + i} for i in range(3)])  # the worker survived
    # the worker survived, and its task carries no stale cancellation: the handler's own
    # CancelledError below still fails only its document
    await async_wait_until(lambda: statuses(store) == {"cancelled": 1, "processed": 2, "failed": 1})
    assert await run.stop() == 0


async def test_a_sync_handler_sees_ctx_cancelled(start: Callable[..., Running]) -> None:
    started = threading.Event()

    def handler(doc: dict[str, Any], ctx: Context) -> None:
        started.set()
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while not ctx.cancelled and datetime.now(UTC) < deadline:
            threading.Event().wait(0.01)

    runner = HandlerRunner(handler, 1, None)
    store = MemoryWorkStore(pending(1))
    run = start(store, runner, lease_seconds=1)
    try:
        await async_wait_until(started.is_set)
        await store.cancel([1], "ops", datetime.now(UTC))
        await async_wait_until(lambda: statuses(store) == {"cancelled": 1})
        assert await run.stop() == 0
    finally:
        runner.close()


async def test_cancels_racing_completions_leave_every_document_settled_once(
    start: Callable[..., Running],
) -> None:
    """Under contention with completion: each document ends processed or cancelled, never
    stuck, never with a request left behind; the answer to each cancel is honest."""
    total = 60

    async def handler(doc: dict[str, Any]) -> None:
        await asyncio.sleep(0.005 * (doc["n"] % 4))

    store = MemoryWorkStore(pending(total))
    run = start(store, handler, lease_seconds=1, batch_size=10, concurrency=4)
    answers = []
    for doc_id in range(1, total + 1, 2):  # every other document, while the agent works
        answers.append((doc_id, await store.cancel([doc_id], "ops", datetime.now(UTC))))
        await asyncio.sleep(0.002)
    await async_wait_until(
        lambda: (
            set(statuses(store)) <= {"processed", "cancelled"}
            and sum(statuses(store).values()) == total
        ),
        timeout=30,
    )
    await run.stop()
    for doc_id, result in answers:
        status = store.get(doc_id)["status"]
        if result.cancelled:
            assert status == "cancelled"
        elif result.not_found:
            assert status == "processed"
        else:
            assert status in ("processed", "cancelled")
    assert not any("cancel_requested" in d for d in store.all())
    for doc_id in range(2, total + 1, 2):
        assert store.get(doc_id)["status"] == "processed", "others untouched"


def bare_context() -> Context:
    """A context as the pipeline makes one, for no document in particular."""
    return Context(
        doc_id=1,
        attempt=1,
        max_attempts=3,
        agent_id="a",
        lease_token="t",
        deadline=None,
        namespace="db.work",
        make_log=lambda: None,
    )


def test_members_outside_a_then_job_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="then job"):
        bare_context().members()


@pytest.mark.parametrize(
    "value",
    [{1, 2}, 2**70, {1: "int key"}, {"$set": 1}, object(), "x" * 2_000],
    ids=["set", "huge-int", "int-key", "dollar-key", "object", "too-big"],
)
def test_progress_that_cannot_be_stored_is_refused_at_once(value: Any) -> None:
    """Before: JSON with default=str accepted sets, huge ints and odd keys, and the BSON
    write then failed inside the lease renewal."""
    ctx = bare_context()
    with pytest.raises(ValueError, match="progress"):
        ctx.set_progress(value)
    assert ctx.take_progress() == (False, None)
    ctx.set_progress({"step": 2, "of": 10, "note": "ok"})
    assert ctx.take_progress() == (True, {"step": 2, "of": 10, "note": "ok"})
