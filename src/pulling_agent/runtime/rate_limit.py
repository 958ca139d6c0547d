"""Rate limits: ``RATE_LIMIT``, ``TYPE_RATE_LIMIT`` and ``FLEET_RATE_LIMIT``, as one object.

Each claimed document gets the moment it may start. :class:`Pace` is a local GCRA
("virtual scheduling"): ``tat`` is the earliest time the next document may start; assigning
a slot moves it ``1 / rate`` on. No burst: an idle limiter starts the next document at once,
then one every ``1 / rate`` seconds. Times are seconds since the epoch, so that slots handed
out by the fleet-wide bucket in MongoDB (:class:`FleetBucket`) mean the same on every agent.

:class:`RateLimiter` is what the pipeline uses: it sizes claims (``HORIZON`` seconds of the
slowest limit), gives each claimed document its start time (one round trip to the fleet's
bucket per claimed batch), and makes a worker wait for its document's slot, counting the
wait by the limit that set it.

The fleet's bucket
------------------
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

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from pulling_agent.config import Settings
from pulling_agent.logs import get_logger
from pulling_agent.queue.model import Claim

HORIZON = 1.0  # seconds of slots an agent hands out ahead of time (claims are sized to it)


@dataclass
class Pace:
    rate: float  # documents per second
    tat: float = 0.0

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def assign(self, now: float) -> float:
        """The start time of the next document."""
        start = max(self.tat, now)
        self.tat = start + self.interval
        return start

    def ahead(self, now: float) -> float:
        """Seconds of slots handed out beyond ``now``."""
        return max(0.0, self.tat - now)


def claim_size(batch_size: int, rates: list[float]) -> int:
    """Documents per claim under rate limits: about ``HORIZON`` seconds of the slowest one,
    so that claimed documents do not wait long for their slot (holding leases other
    agents could use)."""
    if not rates:
        return batch_size
    return max(1, min(batch_size, math.ceil(min(rates) * HORIZON)))


@dataclass
class Throttled:
    """Seconds workers waited for a slot, by the limit that set it."""

    seconds: dict[str, float] = field(
        default_factory=lambda: {"agent": 0.0, "fleet": 0.0, "type": 0.0}
    )

    def add(self, limit: str, seconds: float) -> None:
        self.seconds[limit] = self.seconds.get(limit, 0.0) + seconds


GUESSES = 4  # alternate forms tried before the bucket is taken as malformed
# How far ahead the fleet's next slot can believably be: every agent holds at most about
# two claims' worth of slots (it stops claiming beyond HORIZON), so a tat beyond this many
# claims' worth (or MIN_AHEAD) was not written by agents: it is reset, with a warning.
MAX_CLAIMS_AHEAD = 128
MIN_AHEAD = 30.0
FAR_CLAIMS_AHEAD = 16  # a reservation starting this many claims' worth ahead is warned about
WARN_EVERY = 60.0
RECHECK = 5.0  # seconds between looks at the bucket while a slot is far ahead


class FleetBucket:
    """``FLEET_RATE_LIMIT``: one token bucket for every agent of a collection, in MongoDB."""

    def __init__(
        self, collection: AsyncCollection[Any], name: str, rate: float, batch_size: int = 100
    ) -> None:
        self.collection = collection
        self.bucket_id = f"rate:{name}"
        self.rate = rate
        claim = claim_size(batch_size, [rate]) / rate  # seconds of slots per claim
        self.max_ahead = max(MIN_AHEAD, MAX_CLAIMS_AHEAD * claim)
        self.far_ahead = max(MIN_AHEAD / 3, FAR_CLAIMS_AHEAD * claim)
        self.round_trips = 0
        self._busy = False  # the form to try first
        self._warned_rate: float | None = None
        self._warned_far = float("-inf")
        self._log = get_logger(component="fleet-rate")

    async def reserve(self, n: int, now: float) -> float:
        """Reserve ``n`` consecutive slots; returns the first one's start time (the
        others follow every ``1 / rate`` seconds)."""
        span = n / self.rate
        for _ in range(GUESSES):
            start = await (self._append(span, now) if self._busy else self._restart(span, now))
            if start is not None:
                self._far(start, now)
                return start
            self._busy = not self._busy
        return await self._reset(span, now)

    async def peek(self) -> float | None:
        """The bucket's ``tat`` as stored (None: no bucket, or not a number)."""
        self.round_trips += 1
        doc = await self.collection.find_one({"_id": self.bucket_id}, {"tat": 1})
        tat = None if doc is None else doc.get("tat")
        if isinstance(tat, bool) or not isinstance(tat, int | float) or not math.isfinite(tat):
            return None
        return float(tat)

    def _far(self, start: float, now: float) -> None:
        """Warn (once a minute at most) when a reservation starts far ahead: the fleet
        claims more than the rate lets it process, and documents wait as ``processing``."""
        ahead = start - now
        if ahead <= self.far_ahead or time.monotonic() - self._warned_far < WARN_EVERY:
            return
        self._warned_far = time.monotonic()
        self._log.warning(
            "fleet rate slot far ahead: claimed documents wait as processing for it (more "
            "agents than FLEET_RATE_LIMIT needs, or the bucket was set by hand?)",
            action="queue.fleet_rate_far",
            bucket=self.bucket_id,
            seconds_ahead=round(ahead, 1),
        )

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


class RateLimiter:
    """Every rate limit of one agent. Without limits it costs nothing per document:
    ``paced`` is False and the pipeline never calls :meth:`wait_for_slot`."""

    def __init__(
        self, settings: Settings, fleet: FleetBucket | None, clock: Callable[[], float]
    ) -> None:
        self._pace = Pace(settings.rate_limit) if settings.rate_limit else None
        self._fleet = fleet
        self._fleet_until = 0.0  # end of the last fleet slot this agent reserved
        self._type_paces = {kind: Pace(rate) for kind, rate in settings.type_rates.items()}
        self._type_field = settings.type_field
        self._clock = clock  # seconds since the epoch
        self._held: list[Claim] = []  # claims with a fleet slot whose handler has not started
        self._rechecked = float("-inf")
        self._recheck_lock = asyncio.Lock()
        self._call: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None
        self._log = get_logger(agent_id=settings.agent_id, component="rate-limit")
        rates = [r for r in (settings.rate_limit, fleet.rate if fleet else None) if r]
        self.claim_size = claim_size(settings.batch_size, rates)
        self.paced = bool(rates or self._type_paces)
        self.throttled = Throttled()

    def ahead(self) -> float:
        """Seconds of slots handed out beyond now (0 without ``RATE_LIMIT`` and
        ``FLEET_RATE_LIMIT``): above ``HORIZON``, enough documents wait for their slot."""
        if self._pace is None and self._fleet is None:
            return 0.0
        now = self._clock()
        local = self._pace.ahead(now) if self._pace else 0.0
        return max(local, self._fleet_until - now)

    async def schedule(
        self, claims: list[Claim], call: Callable[[Awaitable[float]], Awaitable[float]]
    ) -> None:
        """Give each claimed document its start time under ``RATE_LIMIT`` and
        ``FLEET_RATE_LIMIT``; the fleet's slots are reserved through ``call`` (the store
        breaker), whose ``PyMongoError`` propagates (the claims are then handed back)."""
        if self._pace is None and self._fleet is None:
            return
        now = self._clock()
        if self._fleet is not None:
            self._call = call
            start = await call(self._fleet.reserve(len(claims), now))
            self._slot(claims, start, "fleet")
            self._held.extend(claims)
        if self._pace is not None:
            for claim in claims:
                slot = self._pace.assign(now)
                if slot > claim.not_before:
                    claim.not_before, claim.paced_by = slot, "agent"

    def _slot(self, claims: list[Claim], start: float, limit: str) -> None:
        assert self._fleet is not None
        interval = 1.0 / self._fleet.rate
        for n, claim in enumerate(claims):
            claim.not_before, claim.paced_by = start + n * interval, limit
        self._fleet_until = max(self._fleet_until, start + len(claims) * interval)

    def forget(self, claims: list[Claim]) -> None:
        """Claims handed back before their handler started: their slots are not held."""
        gone = set(map(id, claims))
        self._held = [c for c in self._held if id(c) not in gone]

    async def wait_for_slot(self, claim: Claim) -> None:
        """Sleep until the rate limits let this document start: its slot from the claim
        (``RATE_LIMIT``, ``FLEET_RATE_LIMIT``), then its type's (``TYPE_RATE_LIMIT``).
        While a fleet slot is more than ``RECHECK`` seconds away, the bucket is looked at
        every ``RECHECK`` seconds: if it was reset or repaired (its ``tat`` fell below the
        slots this agent holds), the held slots are reserved again from it."""
        started = time.monotonic()
        limit = claim.paced_by
        waited = False
        try:
            while (delay := claim.not_before - self._clock()) > 0:
                waited = True
                if claim.paced_by == "fleet" and delay > RECHECK:
                    await asyncio.sleep(RECHECK)
                    await self._recheck()
                else:
                    await asyncio.sleep(delay)
        finally:
            if waited:
                self.throttled.add(limit, time.monotonic() - started)
            self.forget([claim])
        kind = claim.document.get(self._type_field)
        pace = self._type_paces.get(kind) if isinstance(kind, str) else None
        if pace is not None:
            await self._sleep_until(pace.assign(self._clock()), "type")

    async def _recheck(self) -> None:
        """Reserve the held slots again if the bucket no longer accounts for them (once per
        ``RECHECK`` seconds, whichever worker asks; a store error is logged, not raised)."""
        if self._fleet is None or self._call is None:
            return
        async with self._recheck_lock:
            if time.monotonic() - self._rechecked < RECHECK:
                return
            self._rechecked = time.monotonic()
            try:
                tat = await self._call(self._fleet.peek())
                if tat is not None and tat >= self._fleet_until - 1e-6:
                    return
                held = sorted(
                    (c for c in self._held if c.paced_by == "fleet"), key=lambda c: c.not_before
                )
                if not held:
                    return
                self._fleet_until = 0.0
                start = await self._call(self._fleet.reserve(len(held), self._clock()))
            except PyMongoError as exc:
                self._log.warning(
                    "fleet rate bucket not checked",
                    action="queue.fleet_rate_error",
                    error=str(exc)[:300],
                )
                return
            self._slot(held, start, "fleet")
            self._log.warning(
                "fleet rate bucket was reset or repaired: held slots reserved again",
                action="queue.fleet_rate_rescheduled",
                count=len(held),
                seconds_ahead=round(start - self._clock(), 1),
            )

    async def _sleep_until(self, when: float, limit: str) -> None:
        delay = when - self._clock()
        if delay <= 0:
            return
        started = time.monotonic()
        try:
            await asyncio.sleep(delay)
        finally:
            self.throttled.add(limit, time.monotonic() - started)
