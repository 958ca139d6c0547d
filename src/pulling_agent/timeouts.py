"""Waiting with a deadline without ever losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` drops a cancellation that arrives in the same loop
iteration as the awaited future completes (bpo-42130, fixed in 3.12): the caller carries on
as if never cancelled, and a loop around it runs for ever. ``asyncio.timeout()`` passes the
cancellation through, so every wait in this package goes through these helpers, and every
wait for tasks to end has a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True when it is set.
    A cancellation of the caller always propagates."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def within(seconds: float | None, work: Awaitable[T]) -> T:
    """Await ``work`` in the calling task, raising ``TimeoutError`` after ``seconds``
    (``None``: no limit). Unlike ``wait_for`` no task is created: an exception the
    work raises (``SystemExit`` included) is raised here, where the caller can catch it."""
    async with asyncio.timeout(seconds):
        return await work


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], seconds: float) -> list[str]:
    """Cancel ``tasks`` and wait up to ``seconds`` for them to end. Returns the
    names of the tasks still running (ignoring the cancellation) when time is up: the
    caller logs and abandons them instead of waiting for ever."""
    tasks = list(tasks)
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        _done, still = await asyncio.wait(pending, timeout=max(0.0, seconds))
    else:
        still = set()
    for task in tasks:  # retrieve outcomes so none is reported as "never retrieved"
        if task.done() and not task.cancelled():
            task.exception()
    return sorted(t.get_name() for t in still)


EXIT_GRACE = 0.5  # seconds leftover tasks get when the main coroutine has returned


def run_bounded(main: Coroutine[Any, Any, T]) -> T:
    """Like ``asyncio.run``, but the exit cannot hang: tasks left over when ``main``
    returns get ``EXIT_GRACE`` seconds to end after their cancellation, and the default
    thread pool is not joined (a handler or job thread stuck past its timeout must not
    hold the process; the caller exits without waiting for it)."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            leftovers = asyncio.all_tasks(loop)
            if leftovers:
                loop.run_until_complete(cancel_and_wait(leftovers, EXIT_GRACE))
            loop.run_until_complete(_bounded(loop.shutdown_asyncgens(), EXIT_GRACE))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _bounded(work: Awaitable[None], seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        return
