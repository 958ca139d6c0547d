"""The API's routes, one :class:`~fastapi.APIRouter` per area (health, cluster, agent, jobs),
each route a module-level function over the services the app holds
(:func:`pulling_agent.api.app.create_app` puts them in ``app.state``).

Seed endpoints keep their paths and query parameters. Routes are thin: the work is done
by :class:`~pulling_agent.fleet.service.ClusterService`,
:class:`~pulling_agent.fleet.service.AgentService` and
:class:`~pulling_agent.scheduler.service.JobService`, which the CLI uses too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from pulling_agent.api.auth import require_admin, require_metrics, require_read
from pulling_agent.control.cluster import ClusterCommand
from pulling_agent.fleet.service import AgentService, ClusterService, cancel_by_raw_ids
from pulling_agent.scheduler.service import JobService


def _cluster(request: Request) -> ClusterService:
    service: ClusterService = request.app.state.cluster
    return service


def _agent(request: Request) -> AgentService:
    service: AgentService = request.app.state.agent
    return service


def _jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def _stopping(request: Request) -> asyncio.Event | None:
    """Set when the server answering is stopping: a request waiting for acks answers now."""
    stopping: asyncio.Event | None = getattr(request.app.state, "stopping", None)
    return stopping


def _metrics(request: Request) -> Callable[[], bytes]:
    render: Callable[[], bytes] = request.app.state.metrics
    return render


Cluster = Annotated[ClusterService, Depends(_cluster)]
Agent = Annotated[AgentService, Depends(_agent)]
Jobs = Annotated[JobService, Depends(_jobs)]
Stopping = Annotated[asyncio.Event | None, Depends(_stopping)]
Identity = Annotated[str, Depends(require_admin)]
Reason = Annotated[str, Query(max_length=500, description="Why (recorded in the audit trail)")]
UpdatedBy = Annotated[
    str,
    Query(
        max_length=200,
        description="A note on who asked; the audit trail records the token's name as well",
    ),
]
Wait = Annotated[
    float | None,
    Query(ge=0, le=60, description="Seconds to wait for every live agent to acknowledge"),
]
Limit = Annotated[int, Query(ge=1, le=1000)]
JobId = Annotated[str, Path(max_length=200)]
DocId = Annotated[
    str, Path(max_length=200, description="The _id (string, ObjectId hex or integer)")
]

ERROR = {"content": {"application/json": {"example": {"detail": "why"}}}}
MONGO_DOWN: dict[int | str, dict[str, Any]] = {503: {"description": "MongoDB unreachable", **ERROR}}
READ: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token (API_TOKENS is set)", **ERROR},
    403: {"description": "Token not accepted, or a request a token-less API refuses", **ERROR},
    **MONGO_DOWN,
}
AUTH: dict[int | str, dict[str, Any]] = {
    **READ,
    403: {"description": "Token not accepted, or its role is read (admin needed)", **ERROR},
}
JOB_ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "No such job", **ERROR}}
NOT_HERE: dict[int | str, dict[str, Any]] = {
    409: {"description": "Not declared by this agent", **ERROR}
}

health = APIRouter(tags=["health"])
cluster = APIRouter(tags=["cluster"], dependencies=[Depends(require_read)], responses=READ)
agent = APIRouter(tags=["agent"], dependencies=[Depends(require_read)], responses=READ)
jobs = APIRouter(tags=["jobs"], dependencies=[Depends(require_read)], responses=READ)
ROUTERS = (health, cluster, agent, jobs)  # in this order in the OpenAPI document


# ------------------------------------------------------------------------------ health


@health.get("/healthz")
async def healthz(agent: Agent) -> dict[str, Any]:
    """Alive (the event loop answers), whatever the state."""
    return {"status": "alive", "state": agent.state()["state"]}


@health.get("/readyz", responses={503: {"description": "Not running"}})
async def readyz(agent: Agent) -> JSONResponse:
    """200 while the agent can work (running, store answering), 503 otherwise (paused,
    starting, stopping, MongoDB unavailable)."""
    snap = agent.state()
    ready = bool(snap.get("ready"))
    body = {
        "ready": ready,
        "state": snap["state"],
        "paused_by": snap["paused_by"],
        "store": snap.get("store"),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@health.get("/metrics", response_class=Response, dependencies=[Depends(require_metrics)])
async def prometheus_metrics(
    render: Annotated[Callable[[], bytes], Depends(_metrics)],
) -> Response:
    """Prometheus text format."""
    return Response(render(), media_type="text/plain; version=0.0.4; charset=utf-8")


# ------------------------------------------------------------------------------ cluster


@cluster.post("/api/cluster/pause", responses=AUTH)
async def cluster_pause(
    service: Cluster,
    stopping: Stopping,
    identity: Identity,
    reason: Reason = "",
    updated_by: UpdatedBy = "",
    wait: Wait = None,
) -> dict[str, Any]:
    """Pause every agent: in-flight documents finish, then no agent claims."""
    return await service.command(ClusterCommand.PAUSE, reason, identity, updated_by, wait, stopping)


@cluster.post("/api/cluster/resume", responses=AUTH)
async def cluster_resume(
    service: Cluster,
    stopping: Stopping,
    identity: Identity,
    reason: Reason = "",
    updated_by: UpdatedBy = "",
    wait: Wait = None,
) -> dict[str, Any]:
    """Withdraw the cluster's pause (other sources may still hold their own)."""
    return await service.command(
        ClusterCommand.RESUME, reason, identity, updated_by, wait, stopping
    )


@cluster.post("/api/cluster/shutdown", responses=AUTH)
async def cluster_shutdown(
    service: Cluster,
    stopping: Stopping,
    identity: Identity,
    reason: Reason = "",
    updated_by: UpdatedBy = "",
    wait: Wait = None,
) -> dict[str, Any]:
    """Stop every running agent (exit 0). Agents started later stay paused until a
    resume, instead of crash-looping."""
    return await service.command(
        ClusterCommand.SHUTDOWN, reason, identity, updated_by, wait, stopping
    )


@cluster.get("/api/cluster/control-state", responses=MONGO_DOWN)
async def control_state(service: Cluster, agent: Agent) -> dict[str, Any]:
    """The current cluster command, its version, and how this agent follows it."""
    state = await service.control_state()
    return {**state, "watch_mode": agent.state().get("watch_mode")}


@cluster.get("/api/cluster/history", responses=MONGO_DOWN)
async def control_history(service: Cluster, limit: Limit = 20) -> list[dict[str, Any]]:
    """The audit trail, newest first."""
    return await service.history(limit)


@cluster.get("/api/cluster/stats", responses=MONGO_DOWN)
async def cluster_stats(service: Cluster, agent: Agent) -> dict[str, Any]:
    """Live agents (heartbeat within three intervals), backlog by status, throughput."""
    stats = await service.stats()
    return {"watch_mode": agent.state().get("watch_mode"), **stats}


# ------------------------------------------------------------------------------ agent


@agent.get("/api/agent/state")
async def agent_state(service: Agent) -> dict[str, Any]:
    """This agent: state, which sources hold it paused (and why, who, when), counters."""
    return service.state()


@agent.post("/api/agent/pause", responses=AUTH)
async def agent_pause(service: Agent, identity: Identity, reason: Reason = "") -> dict[str, Any]:
    """Pause this agent only (source ``api``)."""
    return service.pause(reason, identity)


@agent.post("/api/agent/resume", responses=AUTH)
async def agent_resume(service: Agent, identity: Identity) -> dict[str, Any]:
    """Withdraw this agent's API pause (other sources may still hold theirs)."""
    return service.resume()


@agent.post("/api/documents/{doc_id}/cancel", responses=AUTH)
async def cancel_document(
    service: Cluster, identity: Identity, doc_id: DocId
) -> dict[str, list[str]]:
    """Cancel a work document: a pending one at once (status ``cancelled``), a
    processing one by request (its agent cancels the handler at its next renewal).
    ``not_found``: no pending or processing document has this id."""
    return await cancel_by_raw_ids(service.work, [doc_id], f"api:{identity}", service.clock())


@agent.get("/api/mongo/status", responses=MONGO_DOWN)
async def mongo_status(service: Agent) -> dict[str, Any]:
    """Connection, server kind, ping; the URI with its password redacted."""
    return await service.mongo_status()


# ------------------------------------------------------------------------------ jobs


@jobs.get("/api/jobs", responses=MONGO_DOWN)
async def list_jobs(service: Jobs) -> list[dict[str, Any]]:
    """Every job: next fire time, last outcome, paused, orphaned (no live agent declares
    it any more)."""
    return await service.list_jobs()


@jobs.post("/api/jobs/{job_id}/run", responses=AUTH | JOB_ERRORS | NOT_HERE)
async def run_job(service: Jobs, identity: Identity, job_id: JobId) -> dict[str, Any]:
    """Run a job now, on this agent, outside its schedule."""
    return await service.run(job_id)


@jobs.post("/api/jobs/{job_id}/pause", responses=AUTH | JOB_ERRORS)
async def pause_job(service: Jobs, identity: Identity, job_id: JobId) -> dict[str, Any]:
    """Stop firing a job (fleet-wide) until resumed."""
    return await service.set_paused(job_id, True)


@jobs.post("/api/jobs/{job_id}/resume", responses=AUTH | JOB_ERRORS)
async def resume_job(service: Jobs, identity: Identity, job_id: JobId) -> dict[str, Any]:
    """Fire a job again, from its next fire time after now (no catch-up)."""
    return await service.set_paused(job_id, False)


@jobs.get("/api/jobs/{job_id}/runs", responses=MONGO_DOWN | JOB_ERRORS)
async def job_runs(service: Jobs, job_id: JobId, limit: Limit = 20) -> list[dict[str, Any]]:
    """A job's run history, newest first."""
    return await service.runs(job_id, limit)
