"""Writing outcomes: group commit, one ``bulk_write`` for whatever accumulated.

Workers add each document's outcome to the :class:`Outbox`; its flusher writes them in one
``WorkStore.complete`` call per batch, and whatever arrives while a write is in flight goes
out in the next one. A partial batch waits at most ``linger`` seconds for company, and not
at all when the pipeline says nothing else is coming. A write that fails because MongoDB is
down is retried with the same values (one time for every try); after the retries, the ones
the first try may have applied are counted from the store. A write that fails for any other
reason is retried document by document, so one outcome MongoDB cannot store never holds
back the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from pymongo.errors import PyMongoError

from pulling_agent.queue.model import Completion, WorkStore
from pulling_agent.runtime.breaker import StoreBreaker
from pulling_agent.runtime.tracing import Tracing
from pulling_agent.text import safe_text
from pulling_agent.timeouts import wait_event


class Outbox:
    def __init__(
        self,
        store: WorkStore,
        breaker: StoreBreaker,
        clock: Callable[[], datetime],
        *,
        linger: float,
        stopping: asyncio.Event,
        give_up_after: int,
        on_written: Callable[[list[Completion], int | None], None],
        on_store_error: Callable[[str, PyMongoError, int, bool], Awaitable[int]],
        log: Any,
        tracing: Tracing | None = None,
    ) -> None:
        """``on_written(batch, applied)`` after each write (``applied`` None: abandoned
        while stopping, after ``give_up_after`` failed tries); ``on_store_error`` logs a
        failed try, waits and returns the next try's number."""
        self._store = store
        self._breaker = breaker
        self._clock = clock
        self._linger = linger
        self._stopping = stopping
        self._give_up_after = give_up_after
        self._on_written = on_written
        self._on_store_error = on_store_error
        self._log = log
        self._tracing = tracing
        self._items: list[Completion] = []
        self._waiting = asyncio.Event()  # outcomes wait to be written
        self._flush_now = asyncio.Event()  # ... and need not wait for company
        self._write_lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, completion: Completion) -> None:
        self._items.append(completion)
        self._waiting.set()

    def flush_soon(self) -> None:
        """Write what waits without lingering (a full batch, or nothing else is coming)."""
        self._flush_now.set()

    async def run(self) -> None:
        """The flusher: write whenever outcomes wait, after at most ``linger`` seconds for
        company (at once when :meth:`flush_soon` was called)."""
        while True:
            await self._waiting.wait()
            await wait_event(self._flush_now, self._linger)
            await self.flush()

    async def flush(self) -> None:
        """Write every outcome collected so far (retrying while the store is down)."""
        async with self._write_lock:
            while self._items:
                batch, self._items = self._items, []
                self._waiting.clear()
                self._flush_now.clear()
                try:
                    with self._tracing.settling(batch) if self._tracing else nullcontext():
                        applied = await self._write(batch)
                except BaseException:
                    # cancelled (shutdown) or a bug: keep the outcomes for the next flush
                    self._items = batch + self._items
                    self._waiting.set()
                    raise
                self._on_written(batch, applied)

    async def _write(self, batch: list[Completion]) -> int | None:
        attempt = 0
        now = self._clock()  # one time for every try: a retried write writes the same values
        while True:
            try:
                applied = await self._breaker.call(self._store.complete(batch, now))
            except PyMongoError as exc:
                if self._stopping.is_set() and attempt >= self._give_up_after:
                    self._log.error(
                        "outcomes not written; their leases will expire and the documents "
                        "will be processed again",
                        action="queue.complete_abandoned",
                        count=len(batch),
                    )
                    return None
                attempt = await self._on_store_error("complete", exc, attempt, False)
                continue
            except Exception:
                # A bug, not an outage: retrying the same batch would fail the same way.
                self._log.exception(
                    "outcome write failed unexpectedly; writing outcomes one by one",
                    action="queue.complete_failed",
                    count=len(batch),
                )
                return await self._write_each(batch, now)
            if attempt == 0 or applied == len(batch):
                return applied
            return await self._written_before(batch, now, applied)

    async def _written_before(self, batch: list[Completion], now: datetime, applied: int) -> int:
        """After a failed write that was retried: the first try may have been applied, so
        the retry changed nothing for those. Count what the store shows as ours."""
        try:
            written = await self._breaker.call(self._store.written(batch, now))
        except PyMongoError:
            return applied
        if written > applied:
            self._log.info(
                "outcomes were written by the attempt that reported an error",
                action="queue.complete_applied_before",
                count=written - applied,
            )
        return max(applied, written)

    async def _write_each(self, batch: list[Completion], now: datetime) -> int:
        applied = 0
        for completion in batch:
            try:
                applied += await self._store.complete([completion], now)
            except Exception:
                self._log.exception(
                    "outcome not written; the lease expires and the document is retried",
                    action="queue.complete_failed",
                    doc_id=safe_text(completion.doc_id, 200),
                )
        return applied
