"""The handler-facing API over a running agent: the context, explicit outcomes, progress."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pulling_agent import Cancel, Context, Fail, Retry, Skip
from pulling_agent.handlers import HandlerRunner
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.work import accepts_context, idempotency_key
from tests.conftest import async_wait_until
from tests.unit.test_runtime import Running, pending, start, statuses

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
