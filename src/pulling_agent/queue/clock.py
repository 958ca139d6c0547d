"""One clock for the fleet: MongoDB's. Every time one process writes and another compares
(leases, heartbeats, registry TTL, fire times, ``available_at``, the fleet bucket, console
sessions) is the server's time as this process estimates it, never its own wall clock.

The estimate is a measured offset: the server's ``hello`` answers ``localTime``; the command
was sent at ``sent`` and answered at ``received`` on this process's *monotonic* clock, so the
server read its clock somewhere in between, and at the midpoint the server's time is
``localTime`` within half the round trip (plus the millisecond ``localTime`` is truncated to).
From the sample on, the estimate moves with the monotonic clock, so a step of the local wall
clock (a VM resumed, ``date -s``, ``faketime``) changes nothing; the bound grows by a drift
allowance per second of age (:data:`DRIFT`, far above a real oscillator's) until the next
sample. The sample kept is the one with the smallest bound now; ``now()`` never goes back
within the bound (a later, better sample may read a little earlier).

No extra round trip per document: samples are taken at start-up and on each heartbeat."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pulling_agent.queue.database import Client

DRIFT = 500e-6  # bound on how fast the local monotonic clock may run off the server's (s/s)
RESOLUTION = 0.001  # localTime is a BSON date: milliseconds, truncated
STARTUP_SAMPLES = 5  # taken back to back at start-up; the tightest is kept
FIRST_SAMPLES = 2  # a producer's or the CLI's first: the second runs on a warm connection
REFRESH = 60.0  # seconds a producer's or the CLI's sample is used before another is taken


@dataclass(frozen=True)
class Sample:
    """The server's time at ``at`` (this process's monotonic clock), within ``error`` s."""

    server: datetime
    at: float
    error: float
    wall: float  # this process's wall clock at ``at`` (only to report the offset)

    def error_at(self, mono: float) -> float:
        return self.error + DRIFT * abs(mono - self.at)

    def server_at(self, mono: float) -> datetime:
        return self.server + timedelta(seconds=mono - self.at)


def sample_of(server_time: Any, sent: float, received: float, wall: float) -> Sample | None:
    """A sample from ``localTime`` read between ``sent`` and ``received`` (monotonic);
    None when the server's answer carries no usable date (or the window is nonsense)."""
    if not isinstance(server_time, datetime) or not received >= sent:
        return None
    if server_time.tzinfo is None:
        server_time = server_time.replace(tzinfo=UTC)
    half = (received - sent) / 2
    # localTime t (truncated) means the server's clock read in [t, t + 1 ms)
    return Sample(
        server_time + timedelta(seconds=RESOLUTION / 2),
        sent + half,
        half + RESOLUTION / 2,
        wall,
    )


class ServerClock:
    """The server's time, estimated from samples of its clock (see the module's text).

    Until the first sample ``now()`` is this process's wall clock and ``error`` is infinite:
    the agent claims nothing until then (``runtime.clock``)."""

    def __init__(
        self,
        ask: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._ask = ask
        self._mono = monotonic
        self._wall = wall
        self.sample: Sample | None = None
        self.stepped = 0  # samples that disagreed with the kept one beyond both bounds
        self._last: datetime | None = None
        self._hold = 0.0  # how far back a better sample may read: held, not followed

    @classmethod
    def of(cls, client: Client) -> ServerClock:
        """Measured with ``hello`` on ``client`` (the primary's clock on a replica set)."""
        return cls(lambda: client.admin.command("hello"))

    # ----------------------------------------------------------------- reading

    def now(self) -> datetime:
        """The server's time now (never earlier than the last answer, within the bound)."""
        mono = self._mono()
        kept = self.sample
        if kept is None:
            return datetime.fromtimestamp(self._wall(), UTC)
        estimate = kept.server_at(mono)
        last = self._last
        if last is not None and timedelta(0) < last - estimate <= timedelta(seconds=self._hold):
            return last  # a better sample read a little earlier: hold until caught up
        self._last = estimate
        return estimate

    @property
    def measured(self) -> bool:
        return self.sample is not None

    @property
    def error(self) -> float:
        """Seconds the estimate may be off now (infinite before the first sample)."""
        kept = self.sample
        return math.inf if kept is None else kept.error_at(self._mono())

    @property
    def offset(self) -> float | None:
        """Seconds the server's clock is ahead of this process's wall clock (None before
        the first sample): -30 means this node's clock is 30 s ahead of the server's."""
        kept = self.sample
        if kept is None:
            return None
        return (kept.server.timestamp() - kept.wall) + 0.0

    # ----------------------------------------------------------------- measuring

    def record(self, sample: Sample) -> bool:
        """Keep ``sample`` if it bounds the server's time tighter than the kept one, or if
        the two disagree beyond both bounds (the server's clock stepped, or a new primary
        reads another time): the server is the clock. Returns whether it was kept."""
        kept = self.sample
        if kept is None:
            self.sample = sample
            return True
        mono = sample.at
        apart = abs((kept.server_at(mono) - sample.server).total_seconds())
        if apart > kept.error_at(mono) + sample.error:
            self.stepped += 1
            self.sample = sample
            self._last = None  # follow the server, even back
            return True
        if sample.error < kept.error_at(mono):
            self._hold = kept.error_at(mono) + sample.error
            self.sample = sample
            return True
        return False

    def take(
        self, answer: Mapping[str, Any], sent: float, received: float, wall: float
    ) -> Sample | None:
        """Record the sample in ``answer`` (a ``hello`` reply) asked at ``sent`` and answered
        at ``received`` (monotonic), ``wall`` read just after: the sample, or None when the
        answer carries no ``localTime``."""
        taken = sample_of(answer.get("localTime"), sent, received, wall)
        if taken is None:
            return None
        # the wall clock read after the answer belongs to the midpoint
        taken = Sample(taken.server, taken.at, taken.error, wall - (received - taken.at))
        self.record(taken)
        return taken

    def stale(self, max_age: float) -> bool:
        """Never measured, or the kept sample is older than ``max_age`` s."""
        kept = self.sample
        return kept is None or self._mono() - kept.at > max_age

    def monotonic(self) -> float:
        return self._mono()

    def wall(self) -> float:
        return self._wall()

    async def measure(self, samples: int = 1) -> Sample | None:
        """Ask the server ``samples`` times; record each. Returns the last sample taken
        (None if the answer had no ``localTime``). Driver errors propagate."""
        if self._ask is None:
            raise RuntimeError("this ServerClock has no server to ask")
        taken = None
        for _ in range(samples):
            sent = self._mono()
            answer = await self._ask()
            received = self._mono()
            taken = self.take(answer, sent, received, self._wall())
        return taken

    async def ensure(self, max_age: float = REFRESH) -> ServerClock:
        """Measured, with a sample younger than ``max_age`` s (for producers and the CLI,
        which have no heartbeat): one round trip when needed, none otherwise."""
        if self.stale(max_age):
            await self.measure(FIRST_SAMPLES if self.sample is None else 1)
        return self
