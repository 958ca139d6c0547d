"""The one control service behind the HTTP API and ``pulling-agent ctl``.

Fleet-wide operations need only MongoDB (``ctl --mongodb-uri`` uses them with no agent
running); per-agent operations need the agent this process runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pulling_agent.control.cluster import ClusterCommand, ControlState
from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.control.requests import Source
from pulling_agent.database import Client
from pulling_agent.encoding import as_dict, as_number, id_candidates, iso, to_json
from pulling_agent.queue.model import WorkStore
from pulling_agent.registry import AgentRegistry
from pulling_agent.runtime import Agent
from pulling_agent.scheduler.definitions import JobDefinition, build_trigger
from pulling_agent.scheduler.runner import Scheduler
from pulling_agent.scheduler.store import ScheduleStore
from pulling_agent.scheduler.timing import anchored, first_fire

ACK_POLL_SECONDS = 0.1


async def cancel_by_raw_ids(work: WorkStore, raw_ids: list[str], by: str) -> dict[str, list[str]]:
    """Cancel documents named as typed (each reading of each id tried); the answer by the
    ids as given: ``cancelled`` (were pending), ``requested`` (processing), ``not_found``."""
    answer: dict[str, list[str]] = {"cancelled": [], "requested": [], "not_found": []}
    for raw in raw_ids:
        result = await work.cancel(id_candidates(raw), by, datetime.now(UTC))
        kind = "cancelled" if result.cancelled else "requested" if result.requested else "not_found"
        answer[kind].append(raw)
    return answer


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class ClusterService:
    def __init__(
        self,
        control: ClusterControlStore,
        registry: AgentRegistry,
        work: WorkStore,
        clock: Callable[[], datetime],
    ) -> None:
        self.control = control
        self.registry = registry
        self.work = work
        self.clock = clock
        self.on_issued: Callable[[ControlState], None] | None = None

    async def command(
        self, command: ClusterCommand, reason: str, identity: str, note: str, wait: float | None
    ) -> dict[str, Any]:
        """Issue a cluster command; with ``wait``, return once every live agent has applied
        its version (or the time is up), saying who did, who did not, and who left (an agent
        that stopped - as after a shutdown - removes itself from the registry)."""
        before = {str(a["_id"]) for a in await self.registry.live(self.clock())} if wait else set()
        state = await self.control.issue(command, reason, identity, note, self.clock())
        if self.on_issued is not None:
            self.on_issued(state)  # the agent that served the command applies it at once
        result: dict[str, Any] = {"control": state.as_dict()}
        if wait:
            result["acks"] = await self.wait_for_acks(state.version, wait, before)
        return result

    async def wait_for_acks(
        self, version: int, seconds: float, expected: Collection[str] = ()
    ) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            live = await self.registry.live(self.clock())
            acked = sorted(
                str(a["_id"]) for a in live if as_number(a.get("version_seen")) >= version
            )
            pending = sorted(
                str(a["_id"]) for a in live if as_number(a.get("version_seen")) < version
            )
            gone = sorted(set(expected) - {str(a["_id"]) for a in live})
            if not pending or time.monotonic() >= deadline:
                result: dict[str, Any] = {
                    "version": version,
                    "complete": not pending,
                    "acknowledged": acked,
                    "pending": pending,
                    "stopped": gone,
                }
                if pending:
                    result["hint"] = (
                        "agents that follow the control document by polling apply a command "
                        "within their CONTROL_POLLING_INTERVAL (10 s by default): wait at "
                        "least that long, or use change streams (a replica set)"
                    )
                return result
            await asyncio.sleep(ACK_POLL_SECONDS)

    async def control_state(self) -> dict[str, Any]:
        state = await self.control.read()
        if state is None:
            return {
                "command": None,
                "version": 0,
                "timestamp": None,
                "reason": "",
                "updated_by": "",
                "note": "",
            }
        shown = state.as_dict()
        shown["timestamp"] = iso(shown["timestamp"])
        return shown

    async def history(self, limit: int) -> list[dict[str, Any]]:
        docs = await self.control.history(limit)
        return [to_json({k: v for k, v in d.items() if k != "kind"}) for d in docs]

    async def stats(self) -> dict[str, Any]:
        agents = await self.registry.live(self.clock())
        backlog = await self.work.counts()
        agents.sort(key=lambda a: str(a["_id"]))
        return {
            "agents": [to_json({"agent_id": a.pop("_id"), **a}) for a in agents],
            "live_agents": len(agents),
            "backlog": backlog,
            "fleet_throughput_per_min": round(
                sum(as_number(a.get("throughput_per_min")) for a in agents), 1
            ),
        }


class AgentService:
    """This process's agent, for the per-agent endpoints."""

    def __init__(
        self,
        agent: Agent,
        client: Client,
        snapshot: Callable[[], dict[str, Any]],
        redacted_uri: str,
    ) -> None:
        self.agent = agent
        self.client = client
        self.snapshot = snapshot
        self.redacted_uri = redacted_uri

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = to_json(self.snapshot())
        return state

    def pause(self, reason: str, identity: str) -> dict[str, Any]:
        self.agent.request_pause(Source.API, reason or "paused through the API", identity)
        return self.state()

    def resume(self) -> dict[str, Any]:
        self.agent.request_resume(Source.API)
        return self.state()

    async def mongo_status(self) -> dict[str, Any]:
        started = time.perf_counter()
        hello = await self.client.admin.command("hello")
        ping_ms = (time.perf_counter() - started) * 1000
        kind = (
            "mongos"
            if hello.get("msg") == "isdbgrid"
            else ("replica_set" if hello.get("setName") else "standalone")
        )
        settings = self.agent.settings
        return {
            "connected": True,
            "ping_ms": round(ping_ms, 2),
            "server": kind,
            "replica_set": hello.get("setName"),
            "writable_primary": bool(hello.get("isWritablePrimary")),
            "uri": self.redacted_uri,
            "database": settings.mongodb_database,
            "collection": settings.mongodb_collection,
            "watch_mode": self.snapshot().get("watch_mode"),
        }


class NotFound(LookupError):
    """No such job (API: 404)."""


class Conflict(RuntimeError):
    """The request cannot be served by this agent (API: 409); the message says where."""


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
