"""Handlers that misbehave in every way we know: each fails its own document, and the agent
goes on (and still shuts down when asked)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.runtime.handlers import HandlerRunner
from pulling_agent.runtime.health import check
from tests.conftest import async_wait_until
from tests.unit.test_agent import Running, pending, start, statuses

__all__ = ["start"]  # the fixture, shared with test_agent

FATAL = [SystemExit, KeyboardInterrupt, GeneratorExit, asyncio.CancelledError]


def _raiser(exc_type: type[BaseException], sync: bool) -> Callable[[dict[str, Any]], Any]:
    """A handler that raises ``exc_type`` on document n=0 and succeeds on the others."""
    if sync:

        def sync_handler(doc: dict[str, Any]) -> None:
            if doc["n"] == 0:
                raise exc_type("from the handler")

        return sync_handler

    async def async_handler(doc: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        if doc["n"] == 0:
            raise exc_type("from the handler")

    return async_handler


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "timeout"])
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("exc_type", FATAL, ids=lambda e: e.__name__)
async def test_any_exception_fails_only_its_document(
    start: Callable[..., Running],
    exc_type: type[BaseException],
    sync: bool,
    timeout: float | None,
) -> None:
    runner = HandlerRunner(_raiser(exc_type, sync), 1, timeout)
    store = MemoryWorkStore(pending(5))
    run = start(store, runner, concurrency=1, max_attempts=1)
    try:
        await async_wait_until(lambda: statuses(store) == {"failed": 1, "processed": 4}, timeout=10)
        assert store.get(1)["error"]["type"] == exc_type.__qualname__
        assert await run.stop() == 0, "the agent's own cancellation and shutdown still work"
    finally:
        runner.close()


async def test_a_worker_survives_a_handler_that_raises_cancelled_error(
    start: Callable[..., Running],
) -> None:
    """Two such handlers used to stop an agent that still reported ready: every worker
    they ran in was gone, and their documents stayed processing with renewed leases."""
    seen: list[int] = []

    async def handler(doc: dict[str, Any]) -> None:
        seen.append(doc["n"])
        if doc["n"] < 2:
            raise asyncio.CancelledError

    store = MemoryWorkStore(pending(6))
    run = start(store, handler, concurrency=2, max_attempts=1)
    await async_wait_until(lambda: statuses(store) == {"failed": 2, "processed": 4})
    assert sorted(seen) == list(range(6))
    assert await run.stop() == 0


def _coroutine_factory(doc: dict[str, Any]) -> Any:
    async def body() -> None:
        raise AssertionError("never runs")

    return body()


async def test_a_sync_handler_returning_a_coroutine_fails_with_advice(
    start: Callable[..., Running],
) -> None:
    runner = HandlerRunner(_coroutine_factory, 1, None)
    store = MemoryWorkStore(pending(1))
    run = start(store, runner, max_attempts=1)
    try:
        await async_wait_until(lambda: statuses(store) == {"failed": 1})
        error = store.get(1)["error"]
        assert error["type"] == "HandlerMisdeclared"
        assert "async def" in error["message"]
        assert await run.stop() == 0
    finally:
        runner.close()


async def _async_handler(doc: dict[str, Any], extra: int = 0) -> None:
    return None


def _sync_wrapper(doc: dict[str, Any]) -> Any:
    return _async_handler(doc)


def test_misdeclared_handlers_are_detected_at_start_up_where_possible() -> None:
    wrapped = functools.wraps(_async_handler)(_sync_wrapper)  # a sync decorator
    partial = functools.partial(_async_handler, extra=1)
    cases: list[tuple[Callable[[dict[str, Any]], Any], bool]] = [
        (wrapped, True),
        (partial, False),
        (_coroutine_factory, False),
    ]
    for handler, expected in cases:
        runner = HandlerRunner(handler, 1, None)
        try:
            # a partial of an async def is awaited properly: not misdeclared
            assert runner.misdeclared is expected, handler
        finally:
            runner.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let the stuck threads end


async def test_stuck_sync_threads_do_not_starve_later_documents(
    start: Callable[..., Running], release: threading.Event, tmp_path: Path
) -> None:
    """Before: two hung handlers filled a pool of two, and every later document timed out
    into the dead letter without its handler starting."""
    started: list[int] = []

    def handler(doc: dict[str, Any]) -> None:
        started.append(doc["n"])
        if doc["n"] < 2:
            release.wait(60)

    runner = HandlerRunner(handler, 2, timeout=0.2, max_abandoned=3)
    store = MemoryWorkStore(pending(8))
    run = start(store, runner, concurrency=2, max_attempts=1, batch_size=8)
    try:
        await async_wait_until(lambda: statuses(store) == {"failed": 2, "processed": 6})
        assert sorted(started) == list(range(8)), "every handler started"
        assert runner.abandoned == 2
        await async_wait_until(
            lambda: "abandoned_threads=2" in _liveness(tmp_path), what="health file count"
        )
        assert check(tmp_path / "health", 30).healthy, "below the limit: still alive"
        assert run.agent.snapshot()["abandoned_threads"] == 2
        release.set()
        await async_wait_until(lambda: runner.abandoned == 0, what="threads finished")
        assert await run.stop() == 0
    finally:
        runner.close()


async def test_liveness_fails_when_stuck_threads_reach_the_limit(
    start: Callable[..., Running], release: threading.Event, tmp_path: Path
) -> None:
    def handler(doc: dict[str, Any]) -> None:
        release.wait(60)

    runner = HandlerRunner(handler, 1, timeout=0.1, max_abandoned=2)
    store = MemoryWorkStore(pending(2))
    run = start(store, runner, concurrency=1, max_attempts=1)
    try:
        await async_wait_until(
            lambda: "MAX_ABANDONED_THREADS=2" in check(tmp_path / "health", 30).message
        )
        assert not check(tmp_path / "health", 30).healthy
        release.set()
        await async_wait_until(lambda: check(tmp_path / "health", 30).healthy)
        assert await run.stop() == 0
    finally:
        runner.close()


def _liveness(tmp_path: Path) -> str:
    try:
        return (tmp_path / "health" / "liveness").read_text()
    except FileNotFoundError:
        return ""
