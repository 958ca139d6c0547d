"""Prometheus metrics, one registry per agent (no process-global state).

Counters and gauges are read from the agent at scrape time, so there is one source of
truth; only the handler-duration histogram is observed as handlers finish. The backlog
gauge comes from a count by status refreshed every ``BACKLOG_REFRESH`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError

from pulling_agent.runtime.state import AgentState

BACKLOG_REFRESH = 15.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COUNTERS = {
    "claimed": "Documents claimed (leased)",
    "processed": "Documents processed successfully",
    "failed": "Documents moved to the dead letter",
    "retried": "Failed attempts scheduled for a retry",
    "released": "Leases handed back to pending (shutdown)",
    "lost_leases": "Outcomes or renewals refused because the lease was taken over",
    "lease_renewals": "Lease renewals written",
    "store_errors": "Store calls that failed and were retried",
    "malformed": "Malformed documents dead-lettered as MalformedDocument (or skipped)",
    "rescheduled": "Attempts a handler ended with Retry (not counted as failures)",
    "cancelled": "Documents a handler ended with Skip or Cancel",
    "batches_closed": "Batches this agent closed (their then job made pending)",
    "dependents_cancelled": "Waiting documents cancelled because a dependency failed",
}
STATUSES = ("pending", "waiting", "processing", "processed", "failed", "cancelled")

Snapshot = Callable[[], dict[str, Any]]


class AgentCollector(Collector):
    def __init__(self, snapshot: Snapshot, backlog: Callable[[], dict[str, int]]) -> None:
        self._snapshot = snapshot
        self._backlog = backlog

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        counters = snap["counters"]
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"pulling_agent_{name}", help_text)
            family.add_metric([], float(counters.get(name, 0)))
            yield family
        throttled = CounterMetricFamily(
            "pulling_agent_throttled_seconds",
            "Seconds workers waited for a rate-limit slot, by limit (agent, fleet, type)",
            labels=["limit"],
        )
        for limit, seconds in sorted(snap.get("throttled_seconds", {}).items()):
            throttled.add_metric([limit], float(seconds))
        yield throttled
        in_flight = GaugeMetricFamily("pulling_agent_in_flight", "Handlers running now")
        in_flight.add_metric([], float(snap["in_flight"]))
        yield in_flight
        stuck = GaugeMetricFamily(
            "pulling_agent_abandoned_handler_threads",
            "Sync handler threads still running past HANDLER_TIMEOUT",
        )
        stuck.add_metric([], float(snap.get("abandoned_threads", 0)))
        yield stuck
        held = GaugeMetricFamily("pulling_agent_held", "Documents leased by this agent")
        held.add_metric([], float(snap["held"]))
        yield held
        state = GaugeMetricFamily(
            "pulling_agent_state", "1 for the agent's current state", labels=["state"]
        )
        for value in AgentState:
            state.add_metric([value.value], 1.0 if snap["state"] == value.value else 0.0)
        yield state
        paused_by = GaugeMetricFamily(
            "pulling_agent_paused_by",
            "1 for each control source holding a pause",
            labels=["source"],
        )
        for request in snap["paused_by"]:
            paused_by.add_metric([request["source"]], 1.0)
        yield paused_by
        version = GaugeMetricFamily(
            "pulling_agent_control_version", "Cluster control version this agent applied"
        )
        version.add_metric([], float(snap["version_seen"]))
        yield version
        mode = GaugeMetricFamily(
            "pulling_agent_watch_mode", "1 for how cluster control is followed", labels=["mode"]
        )
        for watch_mode in ("change_streams", "polling", "disabled"):
            mode.add_metric([watch_mode], 1.0 if snap["watch_mode"] == watch_mode else 0.0)
        yield mode
        yield from _clock_metrics(snap)
        yield from _limit_metrics(snap)
        backlog = GaugeMetricFamily(
            "pulling_agent_backlog", "Work documents by status", labels=["status"]
        )
        counts = self._backlog()
        for status in STATUSES:
            backlog.add_metric([status], float(counts.get(status, 0)))
        yield backlog


def _limit_metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    """Fleet-wide limits (queue.limits), when set: what waited for a slot, what the unique
    slot indexes refused, and the documents this agent holds slots for."""
    limits = snap.get("limits")
    if not isinstance(limits, dict):
        return
    for key, family in (
        (
            "waited",
            CounterMetricFamily(
                "pulling_agent_limit_waits", "Candidates left pending: a limit's slots were full"
            ),
        ),
        (
            "refused",
            CounterMetricFamily(
                "pulling_agent_limit_refusals", "Claims refused: another document held the slot"
            ),
        ),
        (
            "holding",
            GaugeMetricFamily(
                "pulling_agent_limit_slots_held", "Documents of this agent holding limit slots"
            ),
        ),
    ):
        family.add_metric([], float(limits.get(key, 0)))
        yield family


def _clock_metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    """How far this node's clock is from MongoDB's, and the bound on that estimate (absent
    until measured, or when the agent runs on its own clock)."""
    for key, name, help_text in (
        (
            "clock_offset_seconds",
            "pulling_agent_clock_offset_seconds",
            "MongoDB's clock minus this node's (negative: this node is ahead)",
        ),
        (
            "clock_error_seconds",
            "pulling_agent_clock_error_seconds",
            "Bound on the error of the agent's estimate of MongoDB's clock",
        ),
    ):
        family = GaugeMetricFamily(name, help_text)
        value = snap.get(key)
        if isinstance(value, int | float):
            family.add_metric([], float(value))
        yield family


class AgentMetrics:
    """The registry, the handler histogram, and the backlog refresher (a companion)."""

    def __init__(self, snapshot: Snapshot, count: Callable[[], Awaitable[dict[str, int]]]) -> None:
        self.registry = CollectorRegistry()
        self._count = count
        self._backlog: dict[str, int] = {}
        self._backlog_at: float | None = None  # monotonic time of the last count
        self.registry.register(AgentCollector(snapshot, lambda: self._backlog))
        self.handler_seconds = Histogram(
            "pulling_agent_handler_seconds",
            "Handler duration by outcome",
            ["outcome"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.job_runs = Counter(
            "pulling_agent_job_runs",
            "Scheduled job runs recorded by this agent, by outcome",
            ["job_id", "outcome"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "pulling_agent_job_seconds",
            "Scheduled job duration",
            ["job_id"],
            registry=self.registry,
            buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.auth_failures = Counter(
            "pulling_agent_auth_failures",
            "Failed authentications (wrong API token or console sign-in), by kind",
            ["kind"],
            registry=self.registry,
        )
        self.job_lag = Histogram(
            "pulling_agent_job_lag_seconds",
            "Delay between a job's scheduled fire time and its start",
            ["job_id"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )

    def auth_failed(self, kind: str) -> None:
        """A wrong token (``token``) or sign-in (``sign_in``)."""
        self.auth_failures.labels(kind=kind).inc()

    def backlog_age(self) -> float | None:
        """Seconds since the backlog was counted (None: not yet)."""
        return None if self._backlog_at is None else time.monotonic() - self._backlog_at

    def backlog(self) -> dict[str, int]:
        """Documents by status, as last counted (every BACKLOG_REFRESH seconds)."""
        return dict(self._backlog)

    def observe_job(self, job_id: str, outcome: str, seconds: float, lag: float) -> None:
        self.job_runs.labels(job_id=job_id, outcome=outcome).inc()
        if outcome in ("succeeded", "failed"):
            self.job_seconds.labels(job_id=job_id).observe(seconds)
            self.job_lag.labels(job_id=job_id).observe(max(0.0, lag))

    def observe(self, seconds: float, outcome: str) -> None:
        self.handler_seconds.labels(outcome=outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def start(self) -> None:
        await self._refresh()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(BACKLOG_REFRESH)
            await self._refresh()

    async def _refresh(self) -> None:
        with contextlib.suppress(PyMongoError):
            self._backlog = await self._count()
            self._backlog_at = time.monotonic()

    async def stop(self) -> None:
        return None
