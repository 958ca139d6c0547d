"""When a job fires, and what a late fire becomes. Pure, no I/O.

Every agent must compute the same fire times, so an interval without ``start_date`` is
anchored at a fixed instant (2000-01-01 UTC): "every 10 minutes" fires at :00, :10, …
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CATCH_UP = 10_000  # fire times walked when coalescing a long outage
TICK = timedelta(microseconds=1)


def anchored(trigger: BaseTrigger, start_given: bool) -> BaseTrigger:
    """An interval trigger anchored at :data:`ANCHOR` unless the job set ``start_date``."""
    if isinstance(trigger, IntervalTrigger) and not start_given:
        trigger.start_date = ANCHOR
    return trigger


def first_fire(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The first fire time at or after ``now`` (a past date trigger keeps its date)."""
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire


def fire_after(trigger: BaseTrigger, fire: datetime) -> datetime | None:
    after: datetime | None = trigger.get_next_fire_time(fire, fire + TICK)
    return after


@dataclass(frozen=True, slots=True)
class FirePlan:
    fire_time: datetime  # the scheduled time being handled
    run: bool  # run it; else it is recorded as missed
    skipped: int  # earlier missed fires coalesced into this one
    next_fire_time: datetime | None


def plan(
    trigger: BaseTrigger, due: datetime, now: datetime, grace: float, coalesce: bool
) -> FirePlan:
    """What to do with a fire time ``due`` <= ``now``.

    Without ``coalesce`` each fire is handled in turn: run if it is at most ``grace``
    seconds late, else recorded as missed. With ``coalesce`` the missed fires up to now
    collapse into the latest one, which runs if it is within the grace time.
    """
    fire, skipped = due, 0
    if coalesce:
        for _ in range(MAX_CATCH_UP):
            after = fire_after(trigger, fire)
            if after is None or after > now:
                break
            fire, skipped = after, skipped + 1
    late = (now - fire).total_seconds()
    return FirePlan(fire, late <= grace, skipped, fire_after(trigger, fire))
