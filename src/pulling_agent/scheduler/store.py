"""Schedules and run history in MongoDB.

``jobs``: one document per job id - the newest definition and its digest, ``paused``, and
``schedule: {next_fire_time, last_fire_time, version}``, always replaced whole. A fire is
taken by exactly one agent through a compare-and-set on ``schedule.version``; its run
record in ``job_runs`` has the unique ``_id`` ``<job>@<fire time>`` as a second guard.

``job_runs``: ``{_id, job_id, fire_time, agent, started_at, outcome, attempts, lease,
result}``; ``outcome`` is ``running``, ``succeeded``, ``failed`` or ``missed``. A running
record holds a lease its agent renews; when the lease expires (the agent died) another
agent marks the run failed - or runs it again, for jobs with ``retry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from pulling_agent.scheduler.definitions import JobDefinition

Document = dict[str, Any]
RUNNING = "running"


def run_id(job_id: str, fire_time: datetime) -> str:
    return f"{job_id}@{fire_time.isoformat()}"


class ScheduleStore:
    def __init__(self, jobs: AsyncCollection[Document], runs: AsyncCollection[Document]) -> None:
        self.jobs = jobs
        self.runs = runs

    async def ensure_indexes(self, history_days: float) -> None:
        for keys, options in (
            (
                "started_at",
                {"name": "pulling_agent_runs_ttl", "expireAfterSeconds": int(history_days * 86400)},
            ),
            ([("job_id", 1), ("fire_time", -1)], {"name": "pulling_agent_runs_job"}),
            ([("outcome", 1), ("lease.expires_at", 1)], {"name": "pulling_agent_runs_lease"}),
        ):
            try:
                await self.runs.create_index(keys, **options)
            except OperationFailure:
                continue  # an index of that name with other options: keep it

    async def declare(
        self, job: JobDefinition, agent_id: str, now: datetime, first_fire: datetime | None
    ) -> None:
        """Record this agent's definition. An unchanged definition keeps its schedule; a
        changed one (a newer deploy) replaces it, and its next fire is computed afresh."""
        digest = job.digest()
        existing = await self.jobs.find_one({"_id": job.id})
        if existing is not None and existing.get("digest") == digest:
            return
        version = int((existing or {}).get("schedule", {}).get("version", -1)) + 1
        await self.jobs.replace_one(
            {"_id": job.id},
            {
                "_id": job.id,
                "definition": job.model_dump(mode="json"),
                "digest": digest,
                "declared_by": agent_id,
                "declared_at": now,
                "paused": bool((existing or {}).get("paused", False)),
                "schedule": {
                    "next_fire_time": first_fire,
                    "last_fire_time": None,
                    "version": version,
                },
            },
            upsert=True,
        )

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Document]:
        docs = await self.jobs.find({"_id": {"$in": list(job_ids)}}).to_list(length=None)
        return {d["_id"]: d for d in docs}

    async def all_jobs(self) -> list[Document]:
        return await self.jobs.find({}).sort("_id", 1).to_list(length=None)

    async def advance(
        self, job_id: str, version: int, next_fire: datetime | None, last_fire: datetime
    ) -> bool:
        """Take fire ``last_fire``: True for exactly one caller per schedule version."""
        result = await self.jobs.update_one(
            {"_id": job_id, "schedule.version": version},
            {
                "$set": {
                    "schedule": {
                        "next_fire_time": next_fire,
                        "last_fire_time": last_fire,
                        "version": version + 1,
                    }
                }
            },
        )
        return result.modified_count == 1

    async def set_paused(self, job_id: str, paused: bool) -> bool:
        result = await self.jobs.update_one({"_id": job_id}, {"$set": {"paused": paused}})
        return result.matched_count == 1

    async def reschedule(self, job_id: str, version: int, next_fire: datetime | None) -> bool:
        """Restart the schedule from now (after a resume), without a catch-up."""
        doc = await self.jobs.find_one({"_id": job_id})
        last = (doc or {}).get("schedule", {}).get("last_fire_time")
        result = await self.jobs.update_one(
            {"_id": job_id, "schedule.version": version},
            {
                "$set": {
                    "schedule": {
                        "next_fire_time": next_fire,
                        "last_fire_time": last,
                        "version": version + 1,
                    }
                }
            },
        )
        return result.modified_count == 1

    async def record_run(self, doc: Document) -> bool:
        try:
            await self.runs.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def renew(self, run: str, owner: str, expires_at: datetime) -> bool:
        result = await self.runs.update_one(
            {"_id": run, "outcome": RUNNING, "lease.owner": owner},
            {"$set": {"lease": {"owner": owner, "expires_at": expires_at}}},
        )
        return result.modified_count == 1

    async def finish(
        self,
        run: str,
        owner: str,
        outcome: str,
        ended_at: datetime,
        seconds: float,
        error: str | None,
    ) -> bool:
        result = await self.runs.update_one(
            {"_id": run, "outcome": RUNNING, "lease.owner": owner},
            {
                "$set": {
                    "outcome": outcome,
                    "result": {"ended_at": ended_at, "seconds": round(seconds, 3), "error": error},
                },
                "$unset": {"lease": ""},
            },
        )
        return result.modified_count == 1

    async def expired(self, now: datetime) -> list[Document]:
        cursor = self.runs.find({"outcome": RUNNING, "lease.expires_at": {"$lt": now}})
        return await cursor.to_list(length=100)

    async def take_over(
        self, run: Document, owner: str, lease_seconds: float, now: datetime
    ) -> bool:
        """Claim an expired run for a retry (one caller wins)."""
        result = await self.runs.update_one(
            {"_id": run["_id"], "outcome": RUNNING, "lease.owner": run["lease"]["owner"]},
            {
                "$set": {
                    "lease": {"owner": owner, "expires_at": now + timedelta(seconds=lease_seconds)},
                    "agent": owner,
                },
                "$inc": {"attempts": 1},
            },
        )
        return result.modified_count == 1

    async def history(self, job_id: str, limit: int) -> list[Document]:
        cursor = self.runs.find({"job_id": job_id}).sort("started_at", DESCENDING).limit(limit)
        return await cursor.to_list(length=limit)

    async def last_outcomes(self, job_ids: Sequence[str]) -> dict[str, Document]:
        """Each job's newest run (one indexed query per job; jobs are few)."""
        out = {}
        for job_id in job_ids:
            for run in await self.history(job_id, 1):
                out[job_id] = run
        return out
