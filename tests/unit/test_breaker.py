"""The store breaker: when the agent stops being ready because MongoDB does not answer,
and when it is ready again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from pulling_agent.runtime.breaker import StoreBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, changes: list[bool]) -> StoreBreaker:
    b: StoreBreaker

    def changed() -> None:
        changes.append(b.available)

    b = StoreBreaker(10, changed, monotonic=clock, wall=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    return b


def test_a_short_blip_does_not_drop_readiness(clock: Clock) -> None:
    changes: list[bool] = []
    b = breaker(clock, changes)
    clock.now += 3
    b.failed(AutoReconnect("connection reset"))
    assert b.available and changes == []
    b.succeeded()
    clock.now += 20
    b.evaluate()
    assert b.available, "idle without trouble is not an outage"


def test_failures_for_longer_than_the_threshold_open_it_and_a_success_closes_it(
    clock: Clock,
) -> None:
    changes: list[bool] = []
    b = breaker(clock, changes)
    b.failed(AutoReconnect("down"))
    clock.now += 10
    b.failed(ServerSelectionTimeoutError("h:1: [Errno 111] refused, Timeout: 30s, Topology..."))
    assert not b.available and changes == [False]
    assert b.since == datetime(2026, 1, 1, tzinfo=UTC)
    assert b.last_error == "ServerSelectionTimeoutError: h:1: [Errno 111] refused"
    assert b.summary().startswith("unavailable since 2026-01-01T00:00:00+00:00")
    b.failed(AutoReconnect("still down"))
    assert changes == [False], "reported once"
    b.succeeded()
    assert b.available and changes == [False, True] and b.summary() == "ok"


async def test_a_call_that_hangs_opens_it_at_the_next_evaluation(clock: Clock) -> None:
    changes: list[bool] = []
    b = breaker(clock, changes)
    hang = asyncio.Event()
    call = asyncio.create_task(b.call(hang.wait()))
    await asyncio.sleep(0)
    clock.now += 11
    b.evaluate()
    assert not b.available
    assert "no answer for 11s" in b.last_error
    hang.set()
    await call
    assert b.available


async def test_calls_pass_results_and_errors_through(clock: Clock) -> None:
    b = breaker(clock, [])
    assert await b.call(asyncio.sleep(0, result=5)) == 5
    with pytest.raises(AutoReconnect):
        await b.call(_raise(AutoReconnect("x")))


async def _raise(exc: BaseException) -> None:
    raise exc
