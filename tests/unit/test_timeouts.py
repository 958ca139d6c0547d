"""Waits that never lose a cancellation, and cancels that never wait for ever.

The hang they prevent: on Python 3.11 ``asyncio.wait_for`` returns normally when a
cancellation arrives in the same loop iteration as the awaited event is set, so a loop
around it (the registry heartbeat, woken by the follower's ``changed`` while the agent
shuts down) never ends.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from pulling_agent.fleet.registry import AgentRegistry, Heartbeat
from pulling_agent.timeouts import cancel_and_wait, wait_event, within

Wait = Callable[[asyncio.Event], Awaitable[Any]]


async def _loop_until_cancelled(event: asyncio.Event, wait: Wait) -> None:
    while True:
        await wait(event)
        event.clear()


async def _cancel_as_event_fires(wait: Wait) -> asyncio.Task[None]:
    """Start a loop around ``wait``, then set its event and cancel it in the same tick."""
    event = asyncio.Event()
    task = asyncio.create_task(_loop_until_cancelled(event, wait))
    await asyncio.sleep(0)  # the task is now waiting
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    return task


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for was fixed in Python 3.12")
async def test_wait_for_on_3_11_drops_a_cancellation_that_races_the_event() -> None:
    """The mechanism itself, so a reader can see why ``wait_for`` is banned here."""

    async def wait_for(event: asyncio.Event) -> None:
        await asyncio.wait_for(event.wait(), 10)

    task = await _cancel_as_event_fires(wait_for)
    try:
        assert not task.done(), "wait_for swallowed the cancellation and the loop went on"
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=2)


async def test_wait_event_passes_a_cancellation_that_races_the_event() -> None:
    task = await _cancel_as_event_fires(lambda event: wait_event(event, 10))
    assert task.cancelled()


async def test_wait_event_reports_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0) is True


async def test_within_raises_what_the_work_raises_in_the_calling_task() -> None:
    """No task is created: a SystemExit from the work is catchable here (wait_for would
    raise it out of the event loop when the work runs in its own task)."""

    async def exits() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        await within(1, exits())
    with pytest.raises(TimeoutError):
        await within(0.01, asyncio.sleep(5))
    assert await within(None, asyncio.sleep(0, result=7)) == 7


async def test_cancel_and_wait_abandons_a_task_that_ignores_its_cancellation() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    async def polite() -> None:
        await asyncio.sleep(10)

    tasks = [asyncio.create_task(stubborn(), name="stubborn"), asyncio.create_task(polite())]
    await asyncio.sleep(0)
    assert await cancel_and_wait(tasks, 0.1) == ["stubborn"]
    assert tasks[1].cancelled()
    release.set()
    tasks[0].cancel()
    await asyncio.wait(tasks, timeout=2)


class _Collection:
    def __init__(self) -> None:
        self.beats = 0

    async def replace_one(self, *_: Any, **__: Any) -> None:
        self.beats += 1
        await asyncio.sleep(0)


async def test_heartbeat_ends_when_cancelled_as_the_agent_reports_a_change() -> None:
    """The shutdown hang found in 4 of 28 cluster shutdowns, reproduced deterministically."""
    collection = _Collection()
    changed = asyncio.Event()
    heartbeat = Heartbeat(
        AgentRegistry(collection, 60),  # type: ignore[arg-type]
        "agent",
        lambda: {"state": "stopping"},
        changed,
        lambda: datetime.now(UTC),
    )
    task = asyncio.create_task(heartbeat.run())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    changed.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    assert task.cancelled()
