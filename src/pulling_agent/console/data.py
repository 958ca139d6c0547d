"""What the console shows, read from MongoDB as cheaply as each view allows.

Counts are cached for a few seconds (a console refreshing every 2 s, or ten of them, costs
the same); the dead letter is paged by ``_id`` range, never by skip; documents are found by
every reading of an id typed in a box (string, ObjectId, integer).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError

from pulling_agent.encoding import as_dict, as_number, id_candidates
from pulling_agent.fleet.registry import AgentRegistry, is_live, offset_text
from pulling_agent.queue import retention, tracecontext, waits
from pulling_agent.queue import workflow as wf
from pulling_agent.queue.documents import diagnose
from pulling_agent.queue.limits import Limits, waiting_for
from pulling_agent.queue.model import Status
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.queue.occupancy import Occupancy, count_matching, occupancy
from pulling_agent.text import safe_text

Document = dict[str, Any]
COUNTS_TTL = 5.0  # seconds the backlog figures are reused
TYPES_TTL = 30.0  # seconds the dead letter's list of error types is reused
PAGE = 50
REQUEUE_CHUNK = 1_000
MAX_FILTER_CHARS = 200


class Cached:
    """One value recomputed at most every ``ttl`` seconds, whoever asks. Once there is a
    value, a stale one is returned at once while a fresh one is computed in the background
    (stale-while-revalidate): no page waits for a count over the whole collection."""

    def __init__(self, compute: Callable[[], Awaitable[Any]], ttl: float = COUNTS_TTL) -> None:
        self._compute = compute
        self._ttl = ttl
        self._value: Any = None
        self._at = float("-inf")
        self._refresh: asyncio.Task[None] | None = None

    async def get(self) -> Any:
        if time.monotonic() - self._at < self._ttl:
            return self._value
        if self._at == float("-inf"):  # nothing to show yet: compute now
            await self._update()
        elif self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._update())
        return self._value

    async def _update(self) -> None:
        try:
            self._value = await self._compute()
        except PyMongoError:
            if self._at == float("-inf"):
                raise  # the first read has nothing to fall back on
            return  # keep showing the last value; try again at the next request
        self._at = time.monotonic()


def failed_filter(error_type: str = "", text: str = "") -> Document:
    """Dead-letter documents, optionally of one error type and/or whose message contains
    ``text`` (literally, case-insensitively)."""
    query: Document = {"status": Status.FAILED.value}
    if error_type:
        query["error.type"] = error_type[:MAX_FILTER_CHARS]
    if text:
        query["error.message"] = {"$regex": re.escape(text[:MAX_FILTER_CHARS]), "$options": "i"}
    return query


def _age_seconds(doc: Document, now: datetime) -> float | None:
    created = doc.get("enqueued_at")
    if not isinstance(created, datetime):
        oid = doc.get("_id")
        created = oid.generation_time if isinstance(oid, ObjectId) else None
    return max(0.0, (now - created).total_seconds()) if created is not None else None


class ConsoleData:
    def __init__(
        self,
        store: MongoWorkStore,
        registry: AgentRegistry,
        max_attempts: int,
        clock: Callable[[], datetime],
        limits: Limits | None = None,
        lease_seconds: float = 60.0,
        trace_url: str = "",
    ) -> None:
        self.trace_url = trace_url
        self.store = store
        self.work = store.collection
        self.registry = registry
        self.max_attempts = max_attempts
        self.clock = clock
        self.backlog = Cached(self._backlog)
        self._types = Cached(self._error_types, TYPES_TTL)
        self.limits = limits or Limits()
        self.lease_seconds = lease_seconds
        self._occupancy = Cached(self._slots)

    async def occupancy(self) -> Occupancy | None:
        """The fleet-wide limits' slots held now (cached like the counts); None without
        limits set, here or on the documents."""
        if not self.limits.active:
            return None
        found: Occupancy = await self._occupancy.get()
        return found

    async def _slots(self) -> Occupancy:
        return await occupancy(self.work, self.limits, self.clock(), self.lease_seconds)

    async def _backlog(self) -> Document:
        now = self.clock()
        counts = await self.store.counts()
        due = await self._count({"status": Status.PENDING.value, "available_at": {"$lte": now}})
        oldest = await self.work.find_one(
            {"status": Status.PENDING.value}, {"enqueued_at": 1}, sort=[("_id", 1)]
        )
        return {
            "counts": counts,
            "retention": await retention.current(self.work),
            "due_retries": due,
            "oldest_pending_seconds": _age_seconds(oldest, now) if oldest else None,
            "at": now,
        }

    async def agents(self) -> list[Document]:
        """Every registered agent, live ones first; an agent whose heartbeat stopped is
        ``lost`` (its entry expires by TTL), not dropped."""
        now = self.clock()
        docs = await self.registry.entries(limit=500)
        for doc in docs:
            doc["live"] = is_live(doc, now, self.registry.heartbeat_interval)
            doc["clock_shown"] = offset_text(doc.get("clock_offset_seconds"))
            beat = doc.get("heartbeat_at")
            doc["silent_seconds"] = (
                (now - beat).total_seconds() if isinstance(beat, datetime) else None
            )
        docs.sort(key=lambda d: (not d["live"], str(d.get("_id"))))
        return docs

    async def throughput(self, agents: list[Document]) -> list[tuple[int, int, int]]:
        """Processed and failed per minute over the last hour (or since the oldest live
        agent started, at least 10 minutes), summed over the agents' own per-minute counts
        (``minutes`` in their registry entries)."""
        now_minute = int(self.clock().timestamp() // 60)
        # a young fleet's chart covers its life (at least 10 minutes), not an empty hour
        started = [
            int(a["started_at"].timestamp() // 60)
            for a in agents
            if isinstance(a.get("started_at"), datetime)
        ]
        first = max(now_minute - 59, min([*started, now_minute - 9]))
        totals = {m: [0, 0] for m in range(first, now_minute + 1)}
        for agent in agents:
            for row in agent.get("minutes") or []:
                if not isinstance(row, list) or len(row) != 3:
                    continue
                minute, processed, failed = (int(as_number(v)) for v in row)
                if minute in totals:
                    totals[minute][0] += max(0, processed)
                    totals[minute][1] += max(0, failed)
        return [(m, p, f) for m, (p, f) in sorted(totals.items())]

    async def failed_page(
        self, error_type: str, text: str, before: Any | None, limit: int = PAGE
    ) -> tuple[list[Document], Any | None]:
        """One page of the dead letter, newest ``_id`` first, and the id to page on from
        (None on the last page)."""
        query = failed_filter(error_type, text)
        if before is not None:
            query["_id"] = {"$lt": before}
        projection = {"error": 1, "attempts": 1, "failed_at": 1, "errors": 1}
        docs = await self.work.find(
            query, projection, sort=[("_id", -1)], limit=limit + 1
        ).to_list()
        next_before = docs[limit - 1]["_id"] if len(docs) > limit else None
        return docs[:limit], next_before

    async def error_types(self) -> list[str]:
        """The error types in the dead letter, for its filter (cached)."""
        types: list[str] = await self._types.get()
        return types

    async def _error_types(self) -> list[str]:
        types = await self.work.distinct("error.type", {"status": Status.FAILED.value})
        return sorted(safe_text(t, MAX_FILTER_CHARS) for t in types if isinstance(t, str))[:100]

    async def count_failed(self, error_type: str, text: str) -> int:
        return await self._count(failed_filter(error_type, text))

    async def _count(self, query: Document) -> int:
        return await count_matching(self.work, query)

    async def requeue_matching(
        self, error_type: str, text: str, requeue: Callable[[list[Any]], Awaitable[int]]
    ) -> int:
        """Requeue every dead-letter document matching the filter, a chunk at a time."""
        done = 0
        while True:
            ids = [
                d["_id"]
                for d in await self.work.find(
                    failed_filter(error_type, text), {"_id": 1}, limit=REQUEUE_CHUNK
                ).to_list()
            ]
            if not ids:
                return done
            changed = await requeue(ids)
            done += changed
            if changed == 0:  # someone else requeued them meanwhile: nothing left to do here
                return done

    async def document(self, raw_id: str) -> tuple[Document | None, list[Any]]:
        doc = await self.work.find_one({"_id": {"$in": id_candidates(raw_id)}})
        if doc is None:
            return None, []
        problems: list[Any] = diagnose(doc, self.clock(), self.max_attempts)
        if self.limits.active:
            doc["waiting for"] = await waiting_for(self.work, self.limits, doc)
        if doc.get("status") == Status.WAITING:
            problems += waits.shape_problems(doc)
        batch_id = doc.get(wf.BATCH_ID)
        if isinstance(batch_id, str):
            then = await self.work.find_one({f"{wf.BATCH}.id": batch_id})
            doc["batch progress"] = "no then document" if then is None else waits.progress(then)
        elif wf.BATCH in doc:
            doc["batch progress"] = waits.progress(doc)
        link = tracecontext.trace_link(doc.get(tracecontext.TRACE), self.trace_url)
        if link is not None:
            doc["trace link"] = link
        return doc, problems


def lease_of(doc: Document) -> Document:
    return as_dict(doc.get("lease"))
