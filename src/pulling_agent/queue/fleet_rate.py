"""``FLEET_RATE_LIMIT``: one token bucket for every agent of a collection, in MongoDB.

The bucket is one document in the control collection, ``{_id: "rate:<collection>", tat,
rate}``: ``tat`` (seconds since the epoch, a double) is when the fleet's next document may
start. An agent that claimed ``n`` documents *reserves* ``n`` slots with one atomic
``findAndModify``:

* while the fleet is busy (``tat >= now``): ``{$inc: {tat: n / rate}}`` where ``tat >= now``;
  the agent's slots start at the ``tat`` it moved from;
* after a quiet spell (``tat < now``): ``{$set: {tat: now + n / rate}}`` where ``tat < now``
  (upserted the first time); the slots start now.

Each form is guarded by its condition, so two agents can never get the same slot; an agent
that guessed the wrong form tries the other (the guess is what it saw last time: right
whenever the fleet stays busy or stays idle). One round trip per claimed batch, two at a
change between busy and idle. The state is in MongoDB, so a restarted agent cannot reset it.
No pipeline updates (nx-27017 has none) and no dates (plain doubles).
"""

from __future__ import annotations

import math
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from pulling_agent.logs import get_logger

GUESSES = 4  # alternate forms tried before the bucket is taken as malformed
MAX_AHEAD = 3_600.0  # seconds: a tat further ahead (and beyond 1,000 slots) was not written
MAX_AHEAD_SLOTS = 1_000  # by agents: it is reset


class FleetBucket:
    def __init__(self, collection: AsyncCollection[Any], name: str, rate: float) -> None:
        self.collection = collection
        self.bucket_id = f"rate:{name}"
        self.rate = rate
        self.max_ahead = max(MAX_AHEAD, MAX_AHEAD_SLOTS / rate)
        self.round_trips = 0
        self._busy = False  # the form to try first
        self._warned_rate: float | None = None
        self._log = get_logger(component="fleet-rate")

    async def reserve(self, n: int, now: float) -> float:
        """Reserve ``n`` consecutive slots; returns the first one's start time (the
        others follow every ``1 / rate`` seconds)."""
        span = n / self.rate
        for _ in range(GUESSES):
            start = await (self._append(span, now) if self._busy else self._restart(span, now))
            if start is not None:
                return start
            self._busy = not self._busy
        return await self._reset(span, now)

    async def _append(self, span: float, now: float) -> float | None:
        self.round_trips += 1
        doc = await self.collection.find_one_and_update(
            {"_id": self.bucket_id, "tat": {"$gte": now, "$lte": now + self.max_ahead}},
            {"$inc": {"tat": span}},
            projection={"tat": 1, "rate": 1},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        self._check_rate(doc.get("rate"))
        return float(doc["tat"]) - span

    async def _restart(self, span: float, now: float) -> float | None:
        self.round_trips += 1
        try:
            doc = await self.collection.find_one_and_update(
                {"_id": self.bucket_id, "tat": {"$lt": now}},
                {"$set": {"tat": now + span, "rate": self.rate}},
                projection={"_id": 1},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # the bucket exists and is busy: append instead
            return None
        if doc is None:
            return None
        self._busy = True  # we made it busy: the next reservation appends
        return now

    async def _reset(self, span: float, now: float) -> float:
        """Neither form matched ``GUESSES`` times: ``tat`` is not a number, or absurdly far
        ahead (not written by agents). Overwrite it, once, and say so."""
        self.round_trips += 1
        self._log.warning(
            "fleet rate bucket held a value no agent writes; reset",
            action="queue.fleet_rate_reset",
            bucket=self.bucket_id,
        )
        await self.collection.update_one(
            {"_id": self.bucket_id}, {"$set": {"tat": now + span, "rate": self.rate}}, upsert=True
        )
        self._busy = True
        return now

    def _check_rate(self, stored: Any) -> None:
        if not isinstance(stored, int | float) or isinstance(stored, bool):
            return
        if math.isclose(stored, self.rate) or self._warned_rate == stored:
            return
        self._warned_rate = float(stored)
        self._log.warning(
            "agents disagree on FLEET_RATE_LIMIT: set the same value on every agent",
            action="queue.fleet_rate_mismatch",
            bucket=self.bucket_id,
            ours=self.rate,
            theirs=float(stored),
        )
