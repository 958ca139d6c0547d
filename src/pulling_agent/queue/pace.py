"""Rate limits as start times: each document gets the moment it may start.

A :class:`Pace` is a local GCRA ("virtual scheduling"): ``tat`` is the earliest time the
next document may start; assigning a slot moves it ``1 / rate`` on. No burst: an idle
limiter starts the next document at once, then one every ``1 / rate`` seconds. Times are
seconds since the epoch, so that slots handed out by the fleet-wide bucket in MongoDB
(:mod:`pulling_agent.queue.fleet_rate`) mean the same on every agent. Pure, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
