"""The scheduler: a companion of the agent that fires due jobs, once across the fleet.

Every agent runs it for the jobs in its own ``JOBS_FILE``. Each tick it reads its jobs'
schedules, and for a due fire tries to take it (compare-and-set on the schedule version);
the one agent that wins records the run and runs it - or records it as missed when it is
later than ``misfire_grace_time``. Scheduled jobs keep running while the queue is paused
and stop with the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from pulling_agent.control.cluster import ClusterCommand
from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.logs import get_logger
from pulling_agent.queue import tracecontext
from pulling_agent.runtime.handlers import load_handler
from pulling_agent.scheduler.definitions import JobDefinition, build_trigger
from pulling_agent.scheduler.store import RUNNING, ScheduleStore, run_id
from pulling_agent.scheduler.timing import anchored, first_fire, plan
from pulling_agent.timeouts import cancel_and_wait, within

TICK_SECONDS = 1.0
SWEEP_SECONDS = 2.0
RUN_LEASE_SECONDS = 30.0
STOP_SECONDS = 1.0  # runs that outlast the drain get this long to record their cancellation


@dataclass(frozen=True)
class JobContext:
    """What a job function receives first: ``func(ctx, **kwargs)``."""

    db: Any  # the agent's AsyncDatabase
    job_id: str
    run_id: str
    fire_time: datetime
    log: Any


class Scheduler:
    def __init__(
        self,
        jobs: list[JobDefinition],
        store: ScheduleStore,
        control: ClusterControlStore,
        db: Any,
        agent_id: str,
        clock: Callable[[], datetime],
        history_days: float,
        on_run: Callable[[str, str, float, float], None] | None = None,
        lease_seconds: float = RUN_LEASE_SECONDS,
    ) -> None:
        self._lease_seconds = lease_seconds
        self.jobs = {job.id: job for job in jobs if job.enabled}
        self._triggers = {
            job.id: anchored(build_trigger(job), job.start_date is not None)
            for job in self.jobs.values()
        }
        self._funcs: dict[str, Callable[..., Any]] = {
            j.id: load_handler(j.func, what=f"job {j.id!r}: func")
            for j in self.jobs.values()
            if j.func
        }
        self._store = store
        self._control = control
        self._db = db
        self._agent_id = agent_id
        self._clock = clock
        self._history_days = history_days
        self._on_run = on_run
        self._running: dict[str, asyncio.Task[None]] = {}
        self._log = get_logger(agent_id=agent_id, component="scheduler")
        self._last_sweep = 0.0

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if not self.jobs:
            return
        with contextlib.suppress(PyMongoError):
            await self._store.ensure_indexes(self._history_days)
        now = self._clock()
        for job in self.jobs.values():
            await self._store.declare(
                job, self._agent_id, now, first_fire(self._triggers[job.id], now)
            )
        self._log.info("scheduled jobs declared", action="scheduler.start", jobs=sorted(self.jobs))

    async def run(self) -> None:
        if not self.jobs:
            return
        while True:
            try:
                wait = await self.tick()
            except PyMongoError as exc:
                self._log.warning(
                    "schedule unreachable", action="scheduler.error", error=str(exc)[:300]
                )
                wait = TICK_SECONDS
            await asyncio.sleep(wait)

    async def drain(self, seconds: float) -> None:
        """At shutdown, alongside the queue's drain: let running jobs finish for up to
        ``seconds``."""
        tasks = list(self._running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=seconds)

    async def stop(self) -> None:
        """Cancel the runs still going (recorded ``failed``); bounded by the agent."""
        await cancel_and_wait(list(self._running.values()), STOP_SECONDS)

    # ----------------------------------------------------------------- firing

    async def tick(self) -> float:
        """Fire whatever is due; return how long to sleep until the next look."""
        now = self._clock()
        if time.monotonic() - self._last_sweep >= SWEEP_SECONDS:
            self._last_sweep = time.monotonic()
            await self._sweep(now)
        docs = await self._store.get_many(list(self.jobs))
        soonest = TICK_SECONDS
        for job_id, job in self.jobs.items():
            doc = docs.get(job_id)
            if doc is None or doc.get("digest") != job.digest():
                continue  # another agent declared a newer definition: it fires the job
            if doc.get("paused"):
                continue
            schedule = doc.get("schedule") or {}
            due = schedule.get("next_fire_time")
            if not isinstance(due, datetime):
                continue
            if due > now:
                soonest = min(soonest, (due - now).total_seconds())
                continue
            await self._fire(job, int(schedule.get("version", 0)), due, now)
        return max(0.01, soonest)

    async def _fire(self, job: JobDefinition, version: int, due: datetime, now: datetime) -> None:
        fire = plan(self._triggers[job.id], due, now, job.misfire_grace_time, job.coalesce)
        if not await self._store.advance(job.id, version, fire.next_fire_time, fire.fire_time):
            return  # another agent took this fire
        record_id = run_id(job.id, fire.fire_time)
        record: dict[str, Any] = {
            "_id": record_id,
            "job_id": job.id,
            "fire_time": fire.fire_time,
            "agent": self._agent_id,
            "started_at": now,
            "attempts": 1,
            "coalesced": fire.skipped,
            "manual": False,
        }
        if not fire.run:
            late = (now - fire.fire_time).total_seconds()
            record |= {
                "outcome": "missed",
                "result": {
                    "ended_at": now,
                    "seconds": 0.0,
                    "error": f"{late:.1f}s late, misfire_grace_time {job.misfire_grace_time:g}s",
                },
            }
            await self._store.record_run(record)
            self._log.warning(
                "job fire missed",
                action="scheduler.missed",
                job_id=job.id,
                fire_time=fire.fire_time.isoformat(),
                late_seconds=round(late, 1),
            )
            self._count(job.id, "missed", 0.0, late)
            return
        record |= {"outcome": RUNNING, "lease": self._lease(now)}
        if await self._store.record_run(record):
            self._start(job, record_id, fire.fire_time)

    async def run_now(self, job_id: str) -> str:
        """Run a job at once, outside its schedule (API ``POST /api/jobs/{id}/run``)."""
        job = self.jobs[job_id]
        now = self._clock()
        record_id = f"{job_id}@manual-{now.isoformat()}"
        await self._store.record_run(
            {
                "_id": record_id,
                "job_id": job_id,
                "fire_time": now,
                "agent": self._agent_id,
                "started_at": now,
                "attempts": 1,
                "coalesced": 0,
                "manual": True,
                "outcome": RUNNING,
                "lease": self._lease(now),
            }
        )
        self._start(job, record_id, now)
        return record_id

    def _lease(self, now: datetime) -> dict[str, Any]:
        return {"owner": self._agent_id, "expires_at": now + timedelta(seconds=self._lease_seconds)}

    def _start(self, job: JobDefinition, record_id: str, fire_time: datetime) -> None:
        task = asyncio.create_task(self._execute(job, record_id, fire_time), name=record_id)
        self._running[record_id] = task
        task.add_done_callback(lambda _: self._running.pop(record_id, None))

    async def _execute(self, job: JobDefinition, record_id: str, fire_time: datetime) -> None:
        started = time.perf_counter()
        lag = (self._clock() - fire_time).total_seconds()
        log = self._log.bind(job_id=job.id, run_id=record_id)
        renewer = asyncio.create_task(self._renew(record_id))
        outcome, error = "succeeded", None
        log.info("job started", action="scheduler.run", fire_time=fire_time.isoformat())
        try:
            # the run's span: documents its function enqueues are its children
            with tracecontext.span(f"run {job.id}", {"pulling_agent.run_id": record_id}):
                call = self._call(job, JobContext(self._db, job.id, record_id, fire_time, log))
                await within(job.max_runtime, call)
        except asyncio.CancelledError:
            outcome, error = "failed", "cancelled: the agent shut down"
        except TimeoutError:
            outcome, error = "failed", f"exceeded max_runtime {job.max_runtime:g}s"
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__qualname__}: {exc}"[:2000]
        finally:
            renewer.cancel()
        seconds = time.perf_counter() - started
        try:
            await self._store.finish(
                record_id, self._agent_id, outcome, self._clock(), seconds, error
            )
        except PyMongoError as exc:
            log.error("run outcome not recorded", action="scheduler.error", error=str(exc)[:300])
        log.info(
            "job finished",
            action="scheduler.done",
            outcome=outcome,
            seconds=round(seconds, 3),
            error=error,
        )
        self._count(job.id, outcome, seconds, lag)

    def _call(self, job: JobDefinition, ctx: JobContext) -> Awaitable[Any]:
        if job.action:
            command = ClusterCommand(job.action)
            return self._control.issue(
                command,
                job.reason or f"scheduled {job.action} ({job.id})",
                f"scheduler:{job.id}",
                "",
                self._clock(),
            )
        func = self._funcs[job.id]
        if inspect.iscoroutinefunction(func):
            result: Awaitable[Any] = func(ctx, **job.kwargs)
            return result
        return asyncio.to_thread(func, ctx, **job.kwargs)

    async def _renew(self, record_id: str) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            with contextlib.suppress(PyMongoError):
                await self._store.renew(
                    record_id, self._agent_id, self._lease(self._clock())["expires_at"]
                )

    async def _sweep(self, now: datetime) -> None:
        """Runs whose agent died: failed, or run again for jobs with ``retry``."""
        for run in await self._store.expired(now):
            job = self.jobs.get(run["job_id"])
            if job is not None and job.retry and int(run.get("attempts", 1)) < 3:
                if await self._store.take_over(run, self._agent_id, self._lease_seconds, now):
                    self._log.warning(
                        "retrying a run whose agent died",
                        action="scheduler.retry",
                        run_id=run["_id"],
                    )
                    self._start(job, run["_id"], run["fire_time"])
                continue
            owner = (run.get("lease") or {}).get("owner", "?")
            if await self._store.finish(
                run["_id"],
                owner,
                "failed",
                now,
                0.0,
                f"agent {owner} died during the run (lease expired)",
            ):
                self._log.warning(
                    "run failed: its agent died",
                    action="scheduler.orphan_run",
                    run_id=run["_id"],
                    agent=owner,
                )
                self._count(run["job_id"], "failed", 0.0, 0.0)

    def _count(self, job_id: str, outcome: str, seconds: float, lag: float) -> None:
        if self._on_run is not None:
            self._on_run(job_id, outcome, seconds, lag)
