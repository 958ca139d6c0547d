"""The agent registry: one heartbeat document per live agent, for fleet status and acks.

``{_id: agent_id, host, pid, state, version_seen, watch_mode, paused_by, counters,
throughput_per_min, minutes, started_at, heartbeat_at}`` (``minutes``: ``[minute since the
epoch, processed, failed]`` for the last hour) in the ``agents`` collection, replaced
whole at every heartbeat and whenever the agent's state or control version changes;
deleted on clean exit; expired by a TTL index on ``heartbeat_at`` when an agent dies.
After each beat the agent reads the live entries to know its share of the queue's head
(:func:`share_of`, :mod:`pulling_agent.queue.spread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from pulling_agent.logs import get_logger
from pulling_agent.queue.spread import Share
from pulling_agent.timeouts import wait_event

Document = dict[str, Any]
LIVE_HEARTBEATS = 3  # an agent is live while its heartbeat is at most this many intervals old
TTL_MINIMUM_SECONDS = 60  # MongoDB's TTL monitor runs once a minute anyway
THROUGHPUT_WINDOW = timedelta(minutes=1)
MINUTES_KEPT = 60  # per-minute processed/failed counts in the entry, for the console's chart


def is_live(doc: Document, now: datetime, heartbeat_interval: float) -> bool:
    beat = doc.get("heartbeat_at")
    if not isinstance(beat, datetime):
        return False
    return now - beat <= timedelta(seconds=heartbeat_interval * LIVE_HEARTBEATS)


class AgentRegistry:
    def __init__(self, collection: AsyncCollection[Document], heartbeat_interval: float) -> None:
        self.collection = collection
        self.heartbeat_interval = heartbeat_interval

    async def ensure_indexes(self) -> None:
        ttl = max(TTL_MINIMUM_SECONDS, int(self.heartbeat_interval * LIVE_HEARTBEATS * 4))
        with contextlib.suppress(OperationFailure):  # an existing TTL of another length
            await self.collection.create_index(
                "heartbeat_at", name="pulling_agent_ttl", expireAfterSeconds=ttl
            )

    async def beat(self, doc: Document) -> None:
        await self.collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def remove(self, agent_id: str) -> None:
        await self.collection.delete_one({"_id": agent_id})

    async def entries(self, limit: int | None = None) -> list[Document]:
        """Every registered agent, live or not (until its entry expires)."""
        return await self.collection.find({}).to_list(length=limit)

    async def live(self, now: datetime) -> list[Document]:
        """Agents whose heartbeat is recent. Fleets are small: filtered here, not by query,
        so the result does not depend on how the server compares dates."""
        return [d for d in await self.entries() if is_live(d, now, self.heartbeat_interval)]


SKEWED_SECONDS = 1.0  # a node's clock this far off MongoDB's is worth a warning (doctor)


def skewed(live: list[Document], limit: float = SKEWED_SECONDS) -> dict[str, float]:
    """Agents whose node clock is more than ``limit`` s off MongoDB's, by how much (s, the
    node ahead when positive). They run on MongoDB's time regardless; the fix is NTP."""
    found = {}
    for entry in live:
        offset = entry.get("clock_offset_seconds")
        if not isinstance(offset, int | float) or isinstance(offset, bool):
            continue
        if math.isfinite(offset) and abs(offset) > limit:
            found[str(entry.get("_id"))] = round(-float(offset), 3)
    return found


def offset_text(value: Any) -> str:
    """An agent's node clock against MongoDB's, as ``ctl status`` and the console show it:
    ``+30.000s !`` for a node 30 s ahead (``!`` past :data:`SKEWED_SECONDS`), ``-`` when
    unknown (or not a number: the entry may have been written by anyone)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{-value:+.3f}s{' !' if abs(value) > SKEWED_SECONDS else ''}"


def share_of(agent_id: str, types: Any, live: list[Document]) -> Share:
    """``agent_id``'s rank among the running live agents that claim the same types (by
    agent id), and how many they are: where it reads fresh work (:mod:`queue.spread`)."""
    peers = {
        str(entry["_id"])
        for entry in live
        if entry.get("state") == "running" and entry.get("types") == types
    }
    ranked = sorted(peers | {agent_id})
    return Share(ranked.index(agent_id), len(ranked))


class Heartbeat:
    """Keeps this agent's registry document current (a companion of the agent)."""

    def __init__(
        self,
        registry: AgentRegistry,
        agent_id: str,
        snapshot: Callable[[], Document],
        changed: asyncio.Event,
        clock: Callable[[], datetime],
    ) -> None:
        self._registry = registry
        self._agent_id = agent_id
        self._snapshot = snapshot
        self._changed = changed
        self._clock = clock
        self._started_at: datetime | None = None  # at the first beat: on the server's clock
        self._host = socket.gethostname()
        self._samples: deque[tuple[datetime, int]] = deque()
        self._minutes: dict[int, list[int]] = {}  # minute since the epoch -> [processed, failed]
        self._last_counts: tuple[int, int] | None = None
        self._log = get_logger(agent_id=agent_id, component="registry")
        self.share = Share()  # this agent's rank among the running agents of its types

    def document(self) -> Document:
        now = self._clock()
        if self._started_at is None:
            self._started_at = now
        snap = self._snapshot()
        processed = int(snap.get("counters", {}).get("processed", 0))
        self._samples.append((now, processed))
        while self._samples and now - self._samples[0][0] > THROUGHPUT_WINDOW:
            self._samples.popleft()
        first_at, first = self._samples[0]
        span = (now - first_at).total_seconds()
        rate = (processed - first) * 60 / span if span > 0 else 0.0
        self._count_minute(now, processed, int(snap.get("counters", {}).get("failed", 0)))
        return {
            "_id": self._agent_id,
            "host": self._host,
            "pid": os.getpid(),
            **snap,
            "throughput_per_min": round(rate, 1),
            "minutes": [[m, *v] for m, v in sorted(self._minutes.items())],
            "started_at": self._started_at,
            "heartbeat_at": now,
        }

    def _count_minute(self, now: datetime, processed: int, failed: int) -> None:
        """Add what was processed and failed since the last beat to the current minute."""
        last = self._last_counts or (processed, failed)
        self._last_counts = (processed, failed)
        minute = int(now.timestamp() // 60)
        bucket = self._minutes.setdefault(minute, [0, 0])
        bucket[0] += max(0, processed - last[0])
        bucket[1] += max(0, failed - last[1])
        for old in [m for m in self._minutes if m <= minute - MINUTES_KEPT]:
            del self._minutes[old]

    async def start(self) -> None:
        with contextlib.suppress(PyMongoError):
            await self._registry.ensure_indexes()
        await self._beat()

    async def run(self) -> None:
        while True:
            await wait_event(self._changed, self._registry.heartbeat_interval)
            self._changed.clear()
            await self._beat()

    async def _beat(self) -> None:
        doc = self.document()
        try:
            await self._registry.beat(doc)
            live = await self._registry.live(self._clock())
        except PyMongoError as exc:
            self._log.warning(
                "heartbeat not recorded", action="registry.error", error=str(exc)[:300]
            )
            return
        self.share = share_of(self._agent_id, doc.get("types"), live)

    async def stop(self) -> None:
        try:
            await self._registry.remove(self._agent_id)
        except PyMongoError as exc:
            self._log.warning(
                "registry entry not removed", action="registry.error", error=str(exc)[:300]
            )
