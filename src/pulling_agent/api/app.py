"""The HTTP API's app: the services its routes use (:mod:`pulling_agent.api.routes`), the
loopback-only guard of a token-less API, and errors as JSON.

Every error is JSON (``{"detail": ...}``) with a 4xx status for anything the caller got
wrong; 503 only when MongoDB cannot be reached (or, for ``/readyz``, when the agent is not
running).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pymongo.errors import PyMongoError
from starlette.middleware.base import RequestResponseEndpoint

from pulling_agent import __version__
from pulling_agent.api.auth import TokenAuth, local_request_problem
from pulling_agent.api.routes import ROUTERS
from pulling_agent.errors import Conflict, NotFound
from pulling_agent.fleet.service import AgentService, ClusterService
from pulling_agent.logs import get_logger
from pulling_agent.scheduler.service import JobService

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
) -> FastAPI:
    """The API over these services; ``secrets`` are removed from any error it returns."""
    app = FastAPI(
        title="pulling-agent",
        version=__version__,
        description="Control one pulling agent or the whole fleet.",
        openapi_tags=TAGS,
        docs_url=None,  # no third-party scripts on the agent's origin: /openapi.json only
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        redirect_slashes=False,  # a redirect would be built from the caller's Host header
    )
    app.state.auth = auth
    app.state.cluster = cluster
    app.state.agent = agent
    app.state.jobs = jobs
    app.state.metrics = metrics
    app.state.secrets = secrets
    if not auth.enabled:
        app.middleware("http")(local_only)
    app.add_exception_handler(PyMongoError, mongo_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, not_found)  # type: ignore[arg-type]
    app.add_exception_handler(Conflict, conflict)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal_error)
    for router in ROUTERS:
        app.include_router(router)
    return app


async def local_only(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """A token-less API answers local callers only (see :func:`local_request_problem`)."""
    problem = local_request_problem(request.method, request.headers)
    if problem is not None:
        return JSONResponse({"detail": problem}, status_code=403)
    return await call_next(request)


async def mongo_unavailable(request: Request, exc: PyMongoError) -> JSONResponse:
    message = str(exc)[:300]
    for secret in request.app.state.secrets:
        message = message.replace(secret, "***")
    return JSONResponse({"detail": f"MongoDB unavailable: {message}"}, status_code=503)


async def not_found(request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def conflict(request: Request, exc: Conflict) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    get_logger(component="api").exception(
        "API request failed", action="api.error", path=request.url.path
    )
    return JSONResponse({"detail": "internal error (logged by the agent)"}, status_code=500)
