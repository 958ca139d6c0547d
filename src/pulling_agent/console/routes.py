"""The web console under ``/ui``: server-rendered pages, each with a partial the page's
script refreshes every few seconds, and actions sent by that script with the session's
CSRF token. Authorised exactly as the API: a session from an ``API_TOKENS`` token (read:
every view; admin: every action), or, without tokens, the loopback-only anonymous user.

Every view is a module-level function from the request to its template's context
(``CONTEXTS``); every route a module-level function over the :class:`UI` that
:func:`install` puts in ``app.state``."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from bson import json_util
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from pulling_agent.api.auth import ANONYMOUS, TokenAuth, client_of
from pulling_agent.console.data import ConsoleData, lease_of
from pulling_agent.console.revocations import Revocations
from pulling_agent.console.session import COOKIE, CSRF_HEADER, Session, Sessions
from pulling_agent.control.cluster import ClusterCommand
from pulling_agent.encoding import as_dict, as_number, to_json
from pulling_agent.errors import Conflict, NotFound
from pulling_agent.fleet.service import ClusterService
from pulling_agent.queue.occupancy import fleet_types
from pulling_agent.queue.retention import kept_text
from pulling_agent.scheduler.service import JobService
from pulling_agent.text import inert_lines, one_line, safe_text
from pulling_agent.tokens import Role

HERE = Path(__file__).parent
FORM_LIMIT = 4_096  # the sign-in form
MAX_FORM_FIELDS = 10
ACTION_LIMIT = 256 * 1024  # up to 1,000 ids picked in the dead letter
VIEWS = ("overview", "agents", "dlq", "document", "jobs", "control")
REFRESH_SECONDS = 3
ACK_WAIT = 10.0


def _shown(value: Any, limit: int = 300) -> str:
    """Any stored value as one inert line of text (markup is escaped by the templates)."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    shown = to_json(value)
    return one_line(shown if isinstance(shown, str) else json_util.dumps(shown), limit)


def _ago(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "—"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["t"] = _shown
    env.filters["ago"] = _ago
    env.filters["kept"] = kept_text
    env.filters["lease"] = lease_of
    env.filters["d"] = as_dict
    env.filters["n"] = as_number
    env.filters["text"] = inert_lines
    return env


def _encode_id(value: Any) -> str:
    return json_util.dumps(value)


def _decode_id(raw: str | None) -> Any | None:
    if not raw or len(raw) > 500:
        return None
    try:
        return json_util.loads(raw)
    except (ValueError, TypeError):
        return None


def _filter_value(raw: str) -> str:
    """An error type as the page sends it: JSON-quoted (so that any string, control
    characters included, round-trips through an attribute as inert text), or plain."""
    raw = raw[:1_000]
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw[:200]
        return value[:200] if isinstance(value, str) else ""
    return raw[:200]


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "") and bool(parts.scheme)


class RequeueBody(BaseModel):
    ids: list[Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=list, max_length=1_000
    )
    all_matching: bool = False
    type: str = Field(default="", max_length=1_000)
    q: str = Field(default="", max_length=1_000)


class ReasonBody(BaseModel):
    reason: str = Field(default="", max_length=500)


Body = TypeVar("Body", bound=BaseModel)


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, read only up to ``limit`` bytes (413 beyond; the server's
    :mod:`~pulling_agent.api.limits` refuses a larger declared length before this)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body too large: at most {limit} bytes here")
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the sign-in), first value of each field."""
    body = await _body(request, FORM_LIMIT)
    try:
        fields = parse_qs(body.decode(errors="replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise HTTPException(400, f"a sign-in form has at most {MAX_FORM_FIELDS} fields") from None
    return {k: v[0] for k, v in fields.items() if v}


async def _json_body(request: Request, model: type[Body]) -> Body:
    """An action's JSON body, read after the session was checked (422 when invalid)."""
    raw = await _body(request, ACTION_LIMIT)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise HTTPException(422, _first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "body"
    return safe_text(f"{where}: {error.get('msg', 'invalid')}", 300)


@dataclass
class UI:
    """What the console's routes use: its data, the fleet's services, and authorisation."""

    data: ConsoleData
    cluster: ClusterService
    jobs: JobService
    requeue: Callable[[list[Any] | None], Awaitable[int]]
    auth: TokenAuth
    sessions: Sessions
    revocations: Revocations
    env: Environment = field(default_factory=environment)


def install(app: FastAPI, ui: UI) -> None:
    """Serve the console from ``app`` under ``/ui`` (and its static files)."""
    app.state.console = ui
    app.include_router(router)
    app.mount("/ui/static", static_files(), name="console-static")


def _ui(request: Request) -> UI:
    ui: UI = request.app.state.console
    return ui


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(_ui(request).sessions.seconds),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


async def _session_of(request: Request) -> Session | None:
    """The request's session: signed, not expired, its token still what it was, and not
    signed out on any agent."""
    ui = _ui(request)
    session = ui.sessions.read(request.cookies.get(COOKIE))
    if session is None or await ui.revocations.revoked(session.nonce):
        return None
    return session


def _page(request: Request, view: str, session: Session, **context: Any) -> HTMLResponse:
    ui = _ui(request)
    body = ui.env.get_template(f"{view}.html").render(
        view=view,
        views=VIEWS,
        session=session,
        csrf=ui.sessions.csrf(session),
        refresh=REFRESH_SECONDS,
        tokens=ui.auth.enabled,
        query=dict(request.query_params),
        **context,
    )
    return HTMLResponse(body, headers=SECURITY_HEADERS)


async def _viewer(request: Request) -> tuple[Session | None, str | None]:
    """The session, or a cookie to set for a new anonymous one (no tokens)."""
    session = await _session_of(request)
    ui = _ui(request)
    if session is not None or ui.auth.enabled:
        return session, None
    cookie, session = ui.sessions.issue(ANONYMOUS, Role.ADMIN)
    return session, cookie


async def _render(request: Request, view: str, partial: bool) -> Response:
    session, cookie = await _viewer(request)
    if session is None:
        if partial:
            return JSONResponse({"detail": "session expired: sign in again"}, status_code=401)
        return RedirectResponse(f"/ui/login?next={view}", status_code=303)
    context = await CONTEXTS[view](request, _ui(request))
    response = _page(request, f"_{view}" if partial else view, session, **context)
    if cookie is not None:
        _set_cookie(response, request, cookie)
    return response


# ------------------------------------------------------------------------------ views


async def overview(request: Request, ui: UI) -> dict[str, Any]:
    agents = await ui.data.agents()
    minutes = await ui.data.throughput(agents)
    return {
        "backlog": await ui.data.backlog.get(),
        "control": await ui.cluster.control_state(),
        "history": await ui.cluster.history(5),
        "minutes": minutes,
        "peak": max([1, *(p + f for _, p, f in minutes)]),
        "hour_processed": sum(p for _, p, _ in minutes),
        "hour_failed": sum(f for _, _, f in minutes),
        "live": sum(1 for a in agents if a["live"]),
        "limits": await ui.data.occupancy(),
        "limit_disagreements": fleet_types([a for a in agents if a["live"]]).disagreements,
    }


async def agents_view(request: Request, ui: UI) -> dict[str, Any]:
    return {"agents": await ui.data.agents(), "control": await ui.cluster.control_state()}


async def dlq(request: Request, ui: UI) -> dict[str, Any]:
    kind = _filter_value(request.query_params.get("type", ""))
    text = request.query_params.get("q", "")[:200]
    before = _decode_id(request.query_params.get("before"))
    docs, next_before = await ui.data.failed_page(kind, text, before)
    return {
        "docs": docs,
        "next": _encode_id(next_before) if next_before is not None else None,
        "types": await ui.data.error_types(),
        "encode": _encode_id,
        "filter_type": kind,
        "filter_text": text,
    }


async def document(request: Request, ui: UI) -> dict[str, Any]:
    raw = request.query_params.get("id", "")[:200]
    if not raw:
        return {"doc": None, "raw": "", "problems": []}
    doc, problems = await ui.data.document(raw)
    return {"doc": doc, "raw": raw, "problems": problems}


async def jobs_view(request: Request, ui: UI) -> dict[str, Any]:
    listed = await ui.jobs.list_jobs()
    selected = request.query_params.get("job", "")[:200]
    runs = await ui.jobs.runs(selected, 20) if selected in {j["id"] for j in listed} else []
    return {"jobs": listed, "selected": selected, "runs": runs}


async def control(request: Request, ui: UI) -> dict[str, Any]:
    return {
        "control": await ui.cluster.control_state(),
        "history": await ui.cluster.history(20),
        "agents": await ui.data.agents(),
    }


CONTEXTS: dict[str, Callable[[Request, UI], Awaitable[dict[str, Any]]]] = {
    "overview": overview,
    "agents": agents_view,
    "dlq": dlq,
    "document": document,
    "jobs": jobs_view,
    "control": control,
}

# ------------------------------------------------------------------------------ routes

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/overview", status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str = "overview") -> Response:
    ui = _ui(request)
    body = ui.env.get_template("login.html").render(
        error=None, next=next if next in VIEWS else "overview", tokens=ui.auth.enabled
    )
    return HTMLResponse(body, headers=SECURITY_HEADERS)


@router.post("/login")
async def login(request: Request) -> Response:
    if not _same_origin(request):
        raise HTTPException(403, "cross-origin sign-in refused")
    ui = _ui(request)
    client = client_of(request)
    wait = ui.auth.throttle.retry_after(client)
    if wait > 0:
        body = ui.env.get_template("login.html").render(
            error=f"Too many failed sign-ins from this address: try again in {math.ceil(wait)} s.",
            next="overview",
            tokens=ui.auth.enabled,
        )
        headers = {**SECURITY_HEADERS, "Retry-After": str(math.ceil(wait))}
        return HTMLResponse(body, status_code=429, headers=headers)
    form = await _form(request)
    principal = ui.auth.principal(form.get("token", ""))
    target = form.get("next", "overview")
    target = target if target in VIEWS else "overview"
    if principal is None:
        ui.auth.throttle.failed(client, "sign_in")
        body = ui.env.get_template("login.html").render(
            error="That token is not accepted.", next=target, tokens=ui.auth.enabled
        )
        return HTMLResponse(body, status_code=403, headers=SECURITY_HEADERS)
    cookie, _ = ui.sessions.issue(
        principal.name, principal.role, token=form.get("token", "").strip()
    )
    response = RedirectResponse(f"/ui/{target}", status_code=303)
    _set_cookie(response, request, cookie)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if not _same_origin(request):
        raise HTTPException(403, "cross-origin sign-out refused")
    ui = _ui(request)
    session = ui.sessions.read(request.cookies.get(COOKIE))
    if session is not None:  # ended on every agent, also for a copy of the cookie
        await ui.revocations.revoke(session.nonce, session.expires)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(
        COOKIE, path="/ui", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


def _view_route(view: str, partial: bool) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return await _render(request, view, partial)

    return handler


for _view in VIEWS:
    router.add_api_route(f"/{_view}", _view_route(_view, False), methods=["GET"])
    router.add_api_route(f"/partials/{_view}", _view_route(_view, True), methods=["GET"])


async def _actor(request: Request) -> str:
    """The admin behind a state-changing request, or an HTTP error (JSON). Checked before
    the request's body is read."""
    session = await _session_of(request)
    if session is None:
        raise HTTPException(401, "session expired: sign in again")
    if not _same_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    if not _ui(request).sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")
    if not session.may(Role.ADMIN):
        raise HTTPException(403, f"{session.name!r} has the read role; this needs admin")
    return session.name


@router.get("/partials/requeue-preview")
async def requeue_preview(
    request: Request,
    type: str = Query("", max_length=200),
    q: str = Query("", max_length=200),
) -> JSONResponse:
    if await _session_of(request) is None:
        raise HTTPException(401, "session expired: sign in again")
    count = await _ui(request).data.count_failed(_filter_value(type), _filter_value(q))
    return JSONResponse({"count": count})


@router.post("/actions/requeue")
async def requeue_action(request: Request) -> JSONResponse:
    await _actor(request)
    body = await _json_body(request, RequeueBody)
    ui = _ui(request)
    if body.all_matching:
        kind, text = _filter_value(body.type), _filter_value(body.q)
        count = await ui.data.requeue_matching(kind, text, ui.requeue)
    else:
        chosen = [d for d in (_decode_id(i) for i in body.ids) if d is not None]
        if not chosen:
            raise HTTPException(422, "select documents to requeue")
        count = await ui.requeue(chosen)
    return JSONResponse({"requeued": count, "message": f"{count} document(s) requeued"})


@router.post("/actions/cluster/{command}")
async def cluster_action(request: Request, command: str) -> JSONResponse:
    identity = await _actor(request)
    reason = (await _json_body(request, ReasonBody)).reason
    try:
        chosen = ClusterCommand(command)
    except ValueError:
        raise HTTPException(404, f"no such command {safe_text(command, 40)!r}") from None
    if not reason.strip():
        raise HTTPException(422, "give a reason (it goes in the audit trail)")
    stopping = getattr(request.app.state, "stopping", None)
    service = _ui(request).cluster
    result = await service.command(chosen, reason, identity, "console", ACK_WAIT, stopping)
    acks = as_dict(result.get("acks"))
    ignored = [as_dict(i) for i in acks.get("ignored", [])]
    return JSONResponse(
        to_json(
            {
                **result,
                "message": f"{chosen.value} issued as version {result['control']['version']}; "
                f"acknowledged by {len(acks.get('acknowledged', []))}, "
                f"pending {len(acks.get('pending', []))}"
                + "".join(
                    f"; IGNORED by {safe_text(i.get('agent'), 200)}: "
                    f"{safe_text(i.get('reason'), 300)}"
                    for i in ignored
                ),
            }
        )
    )


@router.post("/actions/jobs/{job_id}/{verb}")
async def job_action(request: Request, job_id: str, verb: str) -> JSONResponse:
    await _actor(request)
    jobs = _ui(request).jobs
    try:
        if verb == "run":
            result = await jobs.run(job_id[:200])
        elif verb in ("pause", "resume"):
            result = await jobs.set_paused(job_id[:200], verb == "pause")
        else:
            raise HTTPException(404, "use run, pause or resume")
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return JSONResponse({**result, "message": f"{verb}: {safe_text(job_id, 200)}"})


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")
