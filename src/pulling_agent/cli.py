"""The ``pulling-agent`` command: run, demo, health, dlq."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from pulling_agent.config import Settings, load_settings
from pulling_agent.ctl import app as ctl_app
from pulling_agent.encoding import id_candidates, to_json
from pulling_agent.errors import ConfigError, PullingAgentError, StoreUnavailable
from pulling_agent.jobs_cli import app as jobs_app
from pulling_agent.logs import configure_logging, get_logger
from pulling_agent.text import cell, print_error, safe_text
from pulling_agent.timeouts import run_bounded

EXIT_CONFIG = 2
T = TypeVar("T")

app = typer.Typer(
    help="Pull work documents from MongoDB, run a handler on each, record the outcome.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _options(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if version:
        from pulling_agent import __version__

        typer.echo(f"pulling-agent {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


dlq_app = typer.Typer(help="The dead letter: documents that failed MAX_ATTEMPTS times.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(ctl_app, name="ctl")
app.add_typer(jobs_app, name="jobs")


def _fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    print_error(f"pulling-agent: {message}")
    return typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    configure_logging(settings.log_level, settings.log_format, settings.secrets())
    return settings


@app.command()
def run(
    embedded: Annotated[
        bool,
        typer.Option(
            "--embedded",
            help="Development only: start an embedded MongoDB-wire server (nx-27017) and "
            "use it instead of MONGODB_URI.",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Argument(help="With --embedded: keep the server's data in this directory."),
    ] = None,
) -> None:
    """Run one agent with the configuration from the environment (see README)."""
    if data is not None and not embedded:
        raise _fail(f"a data directory ({data}) is only for --embedded")
    server = None
    overrides: dict[str, Any] = {}
    if embedded:
        from pulling_agent.embedded import EmbeddedServer

        try:
            server = EmbeddedServer(data).start()
        except PullingAgentError as exc:
            raise _fail(str(exc), 1) from None
        overrides = {
            "mongodb_uri": server.uri,
            "mongodb_database": os.environ.get("MONGODB_DATABASE") or "pulling_agent_dev",
            "mongodb_collection": os.environ.get("MONGODB_COLLECTION") or "work",
        }
    try:
        code = _run(overrides, server)
    finally:
        if server is not None:
            server.stop()
    if threading.active_count() > 1:
        # a sync handler still runs in a thread after the shutdown deadline: its lease was
        # handed back already, and waiting for it would only delay the exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def _load(spec: str, what: str, callable_only: bool = True) -> Any:
    from pulling_agent.handlers import load_handler, load_object

    try:
        return load_handler(spec, what) if callable_only else load_object(spec, what)
    except PullingAgentError as exc:
        raise _fail(str(exc)) from None


def _runner(settings: Settings, handler: Any, what: str) -> Any:
    from pulling_agent.handlers import HandlerRunner

    runner = HandlerRunner(
        handler, settings.concurrency, settings.handler_timeout, settings.max_abandoned_threads
    )
    if runner.misdeclared:
        get_logger(agent_id=settings.agent_id).error(
            f"{what} is a sync callable around an async function: every document will fail "
            "until it is declared 'async def'",
            action="agent.handler_misdeclared",
            handler=what,
        )
    return runner


def _handlers(settings: Settings) -> Any:
    """The one handler (``HANDLER``), or routing by type (``HANDLERS``: entries, or a
    :class:`~pulling_agent.worker.Worker`)."""
    from pulling_agent.handlers import TypedHandlers

    default = None
    if settings.handler:
        default = _runner(settings, _load(settings.handler, "HANDLER"), "HANDLER")
    if settings.handlers_registry:
        return _registry(settings, default)
    if not settings.handlers:
        return default
    runners = {
        kind: _runner(settings, _load(spec, f"HANDLERS {kind}"), f"HANDLERS {kind}")
        for kind, spec in settings.handler_map.items()
    }
    return TypedHandlers(runners, default, settings.type_field, settings.type_limits)


def _registry(settings: Settings, default: Any) -> Any:
    from pulling_agent.handlers import TypedHandlers
    from pulling_agent.worker import Worker

    spec = settings.handlers_registry or ""
    worker = _load(spec, "HANDLERS", callable_only=False)
    if not isinstance(worker, Worker):
        raise _fail(
            f"HANDLERS={spec} is a {type(worker).__name__}, not a pulling_agent.Worker "
            "(or give type=module:function entries)"
        )
    if not worker.handlers:
        raise _fail(f"HANDLERS={spec}: the Worker has no handlers registered")
    if None in worker.handlers and default is not None:
        raise _fail(f"HANDLERS={spec} has a handler for documents without a type; unset HANDLER")
    for name, limits in (
        ("TYPE_CONCURRENCY", settings.type_limits),
        ("TYPE_RATE_LIMIT", settings.type_rates),
    ):
        unknown = sorted(set(limits) - set(worker.types))
        if unknown:
            raise _fail(
                f"{name} names {unknown[0]!r}, which HANDLERS={spec} does not register: "
                "give a limit only to a type this agent handles"
            )
    runners = {
        kind: _runner(settings, function, f"HANDLERS {spec} {kind}")
        for kind, function in worker.handlers.items()
        if kind is not None
    }
    if None in worker.handlers:
        default = _runner(settings, worker.handlers[None], f"HANDLERS {spec} (no type)")
    limits = {**worker.concurrency, **settings.type_limits}
    return TypedHandlers(runners, default, settings.type_field, limits)


def _run(overrides: dict[str, Any], server: Any) -> int:
    from pulling_agent.bootstrap import run_agent

    settings = _settings(**overrides)
    if server is not None:
        get_logger(agent_id=settings.agent_id).warning(
            "DEVELOPMENT ONLY: an embedded nx-27017 server, not MongoDB; never use it in "
            "production",
            action="agent.embedded",
            uri=server.uri,
            data="temporary (deleted at exit)" if server.temporary else str(server.directory),
            database=settings.mongodb_database,
            collection=settings.mongodb_collection,
        )
    if not settings.handler and not settings.handlers:
        raise _fail(
            "HANDLER is required: set it to module:function, e.g. myapp.jobs:handle "
            "(or HANDLERS=type=module:function,... to route by type)"
        )
    if os.getcwd() not in sys.path:  # like uvicorn and celery: the working directory imports
        sys.path.insert(0, os.getcwd())
    jobs = []
    if settings.jobs_file is not None:
        from pulling_agent.scheduler.definitions import load_jobs_file

        try:
            jobs = load_jobs_file(settings.jobs_file)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
    runner = _handlers(settings)
    try:
        return run_bounded(run_agent(settings, runner, jobs=jobs))
    finally:
        runner.close()


@app.command()
def demo(
    documents: Annotated[
        int, typer.Option(min=1, max=100_000, help="Sample documents to insert.")
    ] = 600,
    agents: Annotated[int, typer.Option(min=1, max=20, help="Agents to run side by side.")] = 3,
) -> None:
    """Start an embedded MongoDB-wire server, run agents on sample work, show the result.

    With MONGODB_URI set, the demo uses that server instead: database pulling_agent_demo,
    whose work collection it replaces."""
    from pulling_agent.demo import run_demo

    try:
        code = run_demo(documents=documents, agents=agents)
    except PullingAgentError as exc:
        raise _fail(str(exc), 1) from None
    raise typer.Exit(code)


@app.command()
def health(
    max_age: Annotated[float, typer.Option(help="Seconds the liveness file may be old.")] = 30,
    ready: Annotated[bool, typer.Option("--ready", help="Also require readiness.")] = False,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Health directory (default HEALTH_DIR).")
    ] = None,
) -> None:
    """Probe the health files: exit 0 when alive (and ready, with --ready), else 1."""
    from pulling_agent.health import check

    where = directory or Path(os.environ.get("HEALTH_DIR", "/tmp/health"))  # noqa: S108
    report = check(where, max_age, require_ready=ready)
    typer.echo(report.message)
    raise typer.Exit(0 if report.healthy else 1)


def _with_store(action: Callable[[Any], Awaitable[T]]) -> T:
    from pulling_agent.database import run_with_client
    from pulling_agent.queue.mongo import MongoWorkStore

    settings = _settings()

    async def go(client: Any) -> T:
        collection = client[settings.mongodb_database][settings.mongodb_collection]
        return await action(MongoWorkStore(collection))

    try:
        return run_with_client(settings, go)
    except StoreUnavailable as exc:
        raise _fail(str(exc), 1) from None


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="At most this many documents.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document per line.")] = False,
    cancelled: Annotated[
        bool, typer.Option("--cancelled", help="List documents a handler skipped instead.")
    ] = False,
) -> None:
    """List failed documents with their last error (or, with --cancelled, skipped ones)."""

    async def action(store: Any) -> list[dict[str, Any]]:
        if cancelled:
            cursor = store.collection.find(
                {"status": "cancelled"}, sort=[("cancelled_at", 1)], limit=limit
            )
            found: list[dict[str, Any]] = await cursor.to_list(length=limit)
            for doc in found:  # shown like a failure: the reason in the error column
                doc.setdefault("error", {"type": "cancelled", "message": doc.get("cancel_reason")})
                doc.setdefault("failed_at", doc.get("cancelled_at"))
            return found
        docs: list[dict[str, Any]] = await store.list_failed(limit)
        return docs

    docs = _with_store(action)
    if as_json:
        for doc in docs:
            typer.echo(json.dumps(to_json(doc)))
        return
    table = Table(title=f"Dead letter ({len(docs)} shown)")
    table.add_column("_id", overflow="fold")  # never cut: it is what dlq requeue takes
    for column in ("attempts", "failed_at", "error"):
        table.add_column(column)
    for doc in docs:
        failed_at = doc.get("failed_at")
        when = failed_at.isoformat() if isinstance(failed_at, datetime) else failed_at
        table.add_row(
            cell(doc.get("_id"), 10_000),
            cell(doc.get("attempts", "")),
            cell(when or ""),
            cell(_error_summary(doc.get("error")), 120),
        )
    Console().print(table)


def _error_summary(error: Any) -> str:
    """``type: message`` of a dead letter's error, whatever shape it has."""
    if isinstance(error, dict):
        return f"{safe_text(error.get('type', ''), 100)}: {safe_text(error.get('message', ''))}"
    return safe_text(error or "")


@dlq_app.command("requeue")
def dlq_requeue(
    ids: Annotated[list[str] | None, typer.Argument(help="_id values to requeue.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Requeue every failed document.")] = False,
) -> None:
    """Put failed documents back to pending, attempts reset."""
    if bool(ids) == all_:
        raise _fail("give document ids or --all (not both)")
    wanted = {raw: id_candidates(raw) for raw in ids or []}

    async def action(store: Any) -> tuple[int, list[str]]:
        if all_:
            return await store.requeue(None), []
        candidates = [c for options in wanted.values() for c in options]
        failed = store.collection.find({"_id": {"$in": candidates}, "status": "failed"}, {"_id": 1})
        found = {repr(doc["_id"]) async for doc in failed}
        missing = [raw for raw, options in wanted.items() if not found & {repr(c) for c in options}]
        count: int = await store.requeue(candidates) if found else 0
        return count, missing

    count, missing = _with_store(action)
    typer.echo(json.dumps({"requeued": count, "not_failed": missing}))
    if missing:
        print_error(
            f"pulling-agent: no failed document has the _id {', '.join(map(repr, missing))} "
            "(see pulling-agent dlq list)"
        )
        raise typer.Exit(1)


@app.command()
def cancel(
    ids: Annotated[list[str], typer.Argument(help="_id values of the documents to cancel.")],
) -> None:
    """Cancel documents: a pending one at once (status cancelled), a processing one by
    request (its agent cancels the handler at its next lease renewal). Exit 1 if an id
    matches no pending or processing document."""
    from pulling_agent.service import cancel_by_raw_ids

    by = f"cli:{getpass.getuser()}@{socket.gethostname()}"

    async def action(store: Any) -> dict[str, list[str]]:
        return await cancel_by_raw_ids(store, ids, by)

    result = _with_store(action)
    typer.echo(json.dumps(result))
    if result["not_found"]:
        print_error(
            f"pulling-agent: not pending or processing: {', '.join(map(repr, result['not_found']))}"
        )
        raise typer.Exit(1)


@app.command()
def enqueue(
    payload: Annotated[
        str,
        typer.Argument(
            help="The document as a JSON object (Extended JSON), or - to read JSON lines "
            "(one document each) from stdin."
        ),
    ] = "{}",
    key: Annotated[
        str | None, typer.Option(help="Idempotency key: the same key twice is one document.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--type", help="Set TYPE_FIELD, for routing (HANDLERS).")
    ] = None,
    delay: Annotated[
        str | None, typer.Option(help="Due after this long: 90, 30s, 5m, 2h, 1d.")
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="0 to 1000000; higher fresh documents are claimed first.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per document: _id, created, key.")
    ] = False,
) -> None:
    """Put documents in the queue. Prints each _id and whether it is new (a --key seen
    before names the document that has it). Exit 2 on invalid input, nothing written."""
    from pulling_agent.client.aio import enqueue_many
    from pulling_agent.client.jobs import InvalidJob
    from pulling_agent.client.text import command_jobs

    settings = _settings()
    try:
        text = sys.stdin.read() if payload == "-" else None
        jobs = command_jobs(
            payload,
            text,
            key=key,
            kind=kind,
            delay=delay,
            priority=priority,
            type_field=settings.type_field,
        )
    except InvalidJob as exc:
        raise _fail(str(exc)) from None

    async def action(store: Any) -> list[Any]:
        return await enqueue_many(store.collection, jobs, type_field=settings.type_field)

    results = _with_store(action)  # a refusal by MongoDB: one line, exit 1
    for result in results:
        if as_json:
            typer.echo(
                json.dumps(
                    to_json({"_id": result.id, "created": result.created, "key": result.key})
                )
            )
        else:
            state = "enqueued" if result.created else "already there"
            typer.echo(safe_text(f"{state}: {to_json(result.id)}", 300))


SHOWN = (
    "status",
    "attempts",
    "available_at",
    "lease",
    "progress",
    "processed_at",
    "failed_at",
    "cancelled_at",
    "cancel_reason",
    "cancel_requested",
    "error",
)


@app.command()
def get(
    doc_id: Annotated[str, typer.Argument(help="The _id (string, ObjectId hex or integer).")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole document as JSON.")] = False,
) -> None:
    """Show one work document as the agents see it: status, attempts, lease, progress,
    the last error and the error history, and why agents would never process it (if so).
    Exit 1 when no document has this id."""
    from pulling_agent.pipeline import utcnow
    from pulling_agent.queue.documents import diagnose

    settings = _settings()

    async def action(store: Any) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await store.collection.find_one(
            {"_id": {"$in": id_candidates(doc_id)}}
        )
        return found

    doc = _with_store(action)
    if doc is None:
        print_error(f"pulling-agent: no document has the _id {doc_id!r}")
        raise typer.Exit(1)
    problems = diagnose(doc, utcnow(), settings.max_attempts)
    if as_json:
        shown = to_json(doc)
        shown["problems"] = [{"field": p.field, "reason": p.reason, "fix": p.fix} for p in problems]
        typer.echo(json.dumps(shown))
        return
    table = Table(title=cell(f"document {doc_id}"), show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name in SHOWN:
        if name in doc:
            table.add_row(name, cell(to_json(doc[name]), 600))
    errors = doc.get("errors")
    if isinstance(errors, list) and errors:
        table.add_row("errors", cell(f"{len(errors)} recorded (--json shows them)"))
    for problem in problems:
        table.add_row(cell(f"problem: {problem.field}"), cell(f"{problem.reason}; {problem.fix}"))
    Console().print(table)


@app.command()
def doctor(
    limit: Annotated[int, typer.Option(help="List at most this many documents.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """List documents the agents will never process as they stand, why, and the fix.

    Exit 0 when there are none, 1 when there are (or MongoDB cannot be read)."""
    from pulling_agent.doctor import Examination, examine, unserved_types
    from pulling_agent.pipeline import utcnow
    from pulling_agent.registry import AgentRegistry

    settings = _settings()

    async def action(store: Any) -> Examination:
        result = await examine(store.collection, utcnow(), settings.max_attempts, limit)
        db = store.collection.database
        registry = AgentRegistry(db[settings.agents_collection], settings.heartbeat_interval)
        live = await registry.live(utcnow())
        result.unserved = await unserved_types(store.collection, live, settings.type_field)
        return result

    result = _with_store(action)
    if as_json:
        typer.echo(json.dumps(to_json(result.as_dict())))
        raise typer.Exit(1 if result.found or result.unserved else 0)
    console = Console(highlight=False)
    for kind, count in result.unserved.items():
        console.print(
            cell(
                f"type {kind!r}: {count} pending document(s) that no live agent claims "
                f"(start an agent whose HANDLERS include it, or one without HANDLERS)"
            )
        )
    if not result.found and result.unserved:
        raise typer.Exit(1)
    if not result.found:
        console.print(f"No stuck documents among {result.scanned} unfinished.", markup=False)
        raise typer.Exit(0)
    table = Table(
        title=f"{result.found} of {result.scanned} unfinished documents will never be "
        "processed as they stand"
    )
    for column in ("_id", "field", "problem", "fix"):
        table.add_column(column, overflow="fold")
    for finding in result.findings:
        for problem in finding.problems:
            table.add_row(
                *(
                    cell(v, 200)
                    for v in (finding.doc_id, problem.field, problem.reason, problem.fix)
                )
            )
    console.print(table)
    if result.found > len(result.findings):
        console.print(f"... and {result.found - len(result.findings)} more (--limit)", markup=False)
    raise typer.Exit(1)


def main() -> None:
    app(prog_name="pulling-agent")
