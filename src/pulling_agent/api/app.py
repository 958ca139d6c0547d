"""The HTTP API: thin routes over :mod:`pulling_agent.service`.

Seed endpoints keep their paths and query parameters. Every error is JSON
(``{"detail": ...}``) with a 4xx status for anything the caller got wrong; 503 only when
MongoDB cannot be reached (or, for ``/readyz``, when the agent is not running).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pymongo.errors import PyMongoError
from starlette.middleware.base import RequestResponseEndpoint

from pulling_agent import __version__
from pulling_agent.api.auth import (
    TokenAuth,
    local_request_problem,
    require_admin,
    require_metrics,
    require_read,
)
from pulling_agent.control.cluster import ClusterCommand
from pulling_agent.logs import get_logger
from pulling_agent.service import (
    AgentService,
    ClusterService,
    Conflict,
    JobService,
    NotFound,
    cancel_by_raw_ids,
)

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

TAGS = [
    {"name": "cluster", "description": "Every agent, through the control document in MongoDB"},
    {"name": "agent", "description": "The agent serving this request"},
    {"name": "jobs", "description": "Scheduled jobs (each fire runs once across the fleet)"},
    {"name": "health", "description": "Probes and metrics"},
]


def create_app(
    cluster: ClusterService,
    agent: AgentService,
    jobs: JobService,
    auth: TokenAuth,
    metrics: Callable[[], bytes],
    secrets: list[str],
    console: APIRouter | None = None,
) -> FastAPI:
    app = FastAPI(
        title="pulling-agent",
        version=__version__,
        description="Control one pulling agent or the whole fleet.",
        openapi_tags=TAGS,
    )
    app.state.auth = auth
    log = get_logger(component="api")
    api = APIRouter(dependencies=[Depends(require_read)], responses=READ)

    if not auth.enabled:

        @app.middleware("http")
        async def local_only(request: Request, call_next: RequestResponseEndpoint) -> Response:
            problem = local_request_problem(request.method, request.headers)
            if problem is not None:
                return JSONResponse({"detail": problem}, status_code=403)
            return await call_next(request)

    @app.exception_handler(PyMongoError)
    async def mongo_unavailable(request: Request, exc: PyMongoError) -> JSONResponse:
        message = str(exc)[:300]
        for secret in secrets:
            message = message.replace(secret, "***")
        return JSONResponse({"detail": f"MongoDB unavailable: {message}"}, status_code=503)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed", action="api.error", path=request.url.path)
        return JSONResponse({"detail": "internal error (logged by the agent)"}, status_code=500)

    async def cluster_command(
        command: ClusterCommand, identity: str, reason: str, updated_by: str, wait: float | None
    ) -> dict[str, Any]:
        return await cluster.command(command, reason, identity, updated_by, wait)

    @api.post("/api/cluster/pause", tags=["cluster"], responses=AUTH)
    async def cluster_pause(
        identity: Identity, reason: Reason = "", updated_by: UpdatedBy = "", wait: Wait = None
    ) -> dict[str, Any]:
        """Pause every agent: in-flight documents finish, then no agent claims."""
        return await cluster_command(ClusterCommand.PAUSE, identity, reason, updated_by, wait)

    @api.post("/api/cluster/resume", tags=["cluster"], responses=AUTH)
    async def cluster_resume(
        identity: Identity, reason: Reason = "", updated_by: UpdatedBy = "", wait: Wait = None
    ) -> dict[str, Any]:
        """Withdraw the cluster's pause (other sources may still hold their own)."""
        return await cluster_command(ClusterCommand.RESUME, identity, reason, updated_by, wait)

    @api.post("/api/cluster/shutdown", tags=["cluster"], responses=AUTH)
    async def cluster_shutdown(
        identity: Identity, reason: Reason = "", updated_by: UpdatedBy = "", wait: Wait = None
    ) -> dict[str, Any]:
        """Stop every running agent (exit 0). Agents started later stay paused until a
        resume, instead of crash-looping."""
        return await cluster_command(ClusterCommand.SHUTDOWN, identity, reason, updated_by, wait)

    @api.get("/api/cluster/control-state", tags=["cluster"], responses=MONGO_DOWN)
    async def control_state() -> dict[str, Any]:
        """The current cluster command, its version, and how this agent follows it."""
        state = await cluster.control_state()
        return {**state, "watch_mode": agent.state().get("watch_mode")}

    @api.get("/api/cluster/history", tags=["cluster"], responses=MONGO_DOWN)
    async def control_history(limit: Limit = 20) -> list[dict[str, Any]]:
        """The audit trail, newest first."""
        return await cluster.history(limit)

    @api.get("/api/cluster/stats", tags=["cluster"], responses=MONGO_DOWN)
    async def cluster_stats() -> dict[str, Any]:
        """Live agents (heartbeat within three intervals), backlog by status, throughput."""
        stats = await cluster.stats()
        return {"watch_mode": agent.state().get("watch_mode"), **stats}

    @api.get("/api/agent/state", tags=["agent"])
    async def agent_state() -> dict[str, Any]:
        """This agent: state, which sources hold it paused (and why, who, when), counters."""
        return agent.state()

    @api.post("/api/agent/pause", tags=["agent"], responses=AUTH)
    async def agent_pause(identity: Identity, reason: Reason = "") -> dict[str, Any]:
        """Pause this agent only (source ``api``)."""
        return agent.pause(reason, identity)

    @api.post("/api/agent/resume", tags=["agent"], responses=AUTH)
    async def agent_resume(identity: Identity) -> dict[str, Any]:
        """Withdraw this agent's API pause (other sources may still hold theirs)."""
        return agent.resume()

    @api.post("/api/documents/{doc_id}/cancel", tags=["agent"], responses=AUTH)
    async def cancel_document(identity: Identity, doc_id: DocId) -> dict[str, list[str]]:
        """Cancel a work document: a pending one at once (status ``cancelled``), a
        processing one by request (its agent cancels the handler at its next renewal).
        ``not_found``: no pending or processing document has this id."""
        return await cancel_by_raw_ids(cluster.work, [doc_id], f"api:{identity}")

    @api.get("/api/mongo/status", tags=["agent"], responses=MONGO_DOWN)
    async def mongo_status() -> dict[str, Any]:
        """Connection, server kind, ping; the URI with its password redacted."""
        return await agent.mongo_status()

    job_errors: dict[int | str, dict[str, Any]] = {404: {"description": "No such job", **ERROR}}

    @api.get("/api/jobs", tags=["jobs"], responses=MONGO_DOWN)
    async def list_jobs() -> list[dict[str, Any]]:
        """Every job: next fire time, last outcome, paused, orphaned (no live agent declares
        it any more)."""
        return await jobs.list_jobs()

    @api.post(
        "/api/jobs/{job_id}/run",
        tags=["jobs"],
        responses=AUTH | job_errors | {409: {"description": "Not declared by this agent", **ERROR}},
    )
    async def run_job(identity: Identity, job_id: JobId) -> dict[str, Any]:
        """Run a job now, on this agent, outside its schedule."""
        return await jobs.run(job_id)

    @api.post("/api/jobs/{job_id}/pause", tags=["jobs"], responses=AUTH | job_errors)
    async def pause_job(identity: Identity, job_id: JobId) -> dict[str, Any]:
        """Stop firing a job (fleet-wide) until resumed."""
        return await jobs.set_paused(job_id, True)

    @api.post("/api/jobs/{job_id}/resume", tags=["jobs"], responses=AUTH | job_errors)
    async def resume_job(identity: Identity, job_id: JobId) -> dict[str, Any]:
        """Fire a job again, from its next fire time after now (no catch-up)."""
        return await jobs.set_paused(job_id, False)

    @api.get("/api/jobs/{job_id}/runs", tags=["jobs"], responses=MONGO_DOWN | job_errors)
    async def job_runs(job_id: JobId, limit: Limit = 20) -> list[dict[str, Any]]:
        """A job's run history, newest first."""
        return await jobs.runs(job_id, limit)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Alive (the event loop answers), whatever the state."""
        return {"status": "alive", "state": agent.state()["state"]}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not running"}})
    async def readyz() -> JSONResponse:
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

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        dependencies=[Depends(require_metrics)],
    )
    async def prometheus_metrics() -> Response:
        """Prometheus text format."""
        return Response(metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(api)
    if console is not None:
        from pulling_agent.console.routes import static_files

        app.include_router(console)
        app.mount("/ui/static", static_files(), name="console-static")
    return app
