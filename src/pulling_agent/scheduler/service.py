"""Scheduled jobs for the HTTP API, the console and ``pulling-agent jobs``: the one service
those use, so none of them reaches into the scheduler's store, triggers or runner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from pulling_agent.encoding import as_dict, as_number, to_json
from pulling_agent.errors import Conflict, NotFound
from pulling_agent.fleet.registry import AgentRegistry
from pulling_agent.scheduler.definitions import JobDefinition, build_trigger
from pulling_agent.scheduler.runner import Scheduler
from pulling_agent.scheduler.store import ScheduleStore
from pulling_agent.scheduler.timing import anchored, first_fire


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class JobService:
    """Scheduled jobs for the API and ``pulling-agent jobs``."""

    def __init__(
        self,
        store: ScheduleStore,
        registry: AgentRegistry,
        scheduler: Scheduler | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.registry = registry
        self.scheduler = scheduler
        self.clock = clock

    async def list_jobs(self) -> list[dict[str, Any]]:
        """Every job with its next fire time, last outcome, and who declares it; a job no
        live agent declares any more is ``orphaned`` and does not fire."""
        jobs = await self.store.all_jobs()
        live = await self.registry.live(self.clock())
        declared = {str(job_id) for a in live for job_id in _list(a.get("jobs"))}
        last = await self.store.last_outcomes([j["_id"] for j in jobs])
        out = []
        for job in jobs:
            schedule = as_dict(job.get("schedule"))
            previous = as_dict(last.get(job["_id"]))
            out.append(
                to_json(
                    {
                        "id": job["_id"],
                        "trigger": as_dict(job.get("definition")).get("trigger"),
                        "paused": bool(job.get("paused")),
                        "orphaned": job["_id"] not in declared,
                        "next_fire_time": schedule.get("next_fire_time"),
                        "last_fire_time": schedule.get("last_fire_time"),
                        "last_outcome": previous.get("outcome"),
                        "last_run": previous.get("_id"),
                        "declared_by": job.get("declared_by"),
                        "digest": job.get("digest"),
                    }
                )
            )
        return out

    async def _require(self, job_id: str) -> dict[str, Any]:
        [*found] = (await self.store.get_many([job_id])).values()
        if not found:
            raise NotFound(f"no job {job_id!r}")
        return found[0]

    async def run(self, job_id: str) -> dict[str, Any]:
        await self._require(job_id)
        if self.scheduler is None or job_id not in self.scheduler.jobs:
            raise Conflict(
                f"job {job_id!r} is not declared by this agent; "
                "call an agent whose JOBS_FILE has it"
            )
        return {"job_id": job_id, "run_id": await self.scheduler.run_now(job_id)}

    async def set_paused(self, job_id: str, paused: bool) -> dict[str, Any]:
        job = await self._require(job_id)
        await self.store.set_paused(job_id, paused)
        if not paused:  # restart from now: no catch-up of fires skipped while paused
            try:
                definition = JobDefinition(**as_dict(job.get("definition")))
            except (ValidationError, ValueError, TypeError):
                raise Conflict(
                    f"job {job_id!r} has a malformed stored definition: restart an agent "
                    "whose JOBS_FILE declares it (it rewrites the definition)"
                ) from None
            trigger = anchored(build_trigger(definition), definition.start_date is not None)
            version = int(as_number(as_dict(job.get("schedule")).get("version")))
            await self.store.reschedule(job_id, version, first_fire(trigger, self.clock()))
        return {"job_id": job_id, "paused": paused}

    async def runs(self, job_id: str, limit: int) -> list[dict[str, Any]]:
        await self._require(job_id)
        history = await self.store.history(job_id, limit)
        return [to_json({"run_id": r.pop("_id"), **r}) for r in history]
