"""``pulling-agent run``, ``demo`` and ``health``: run an agent, try the whole system on
sample work, probe an agent's health files."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from pulling_agent.cli.options import fail, settings
from pulling_agent.errors import ConfigError, PullingAgentError
from pulling_agent.logs import get_logger
from pulling_agent.timeouts import run_bounded

DEV_SWEEP_SECONDS = 1.0


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
        raise fail(f"a data directory ({data}) is only for --embedded")
    if data is not None and data.exists() and not data.is_dir():
        raise fail(f"run --embedded {data}: that is a file; give a directory (made if missing)")
    server = None
    overrides: dict[str, Any] = {}
    if embedded:
        from pulling_agent.dev.embedded import EmbeddedServer

        try:
            server = EmbeddedServer(data).start()
        except PullingAgentError as exc:
            raise fail(str(exc), 1) from None
        overrides = {
            "mongodb_uri": server.uri,
            "mongodb_database": os.environ.get("MONGODB_DATABASE") or "pulling_agent_dev",
            "mongodb_collection": os.environ.get("MONGODB_COLLECTION") or "work",
            # nx-27017 keeps a date written with $set as text: retries and delays wait for
            # the sweep, so in development it runs every second, not every minute
            "sweep_interval": float(os.environ.get("SWEEP_INTERVAL") or DEV_SWEEP_SECONDS),
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


def _run(overrides: dict[str, Any], server: Any) -> int:
    from pulling_agent.bootstrap import run_agent
    from pulling_agent.runtime.handlers import build_handlers

    loaded = settings(**overrides)
    if server is not None:
        get_logger(agent_id=loaded.agent_id).warning(
            "DEVELOPMENT ONLY: an embedded nx-27017 server, not MongoDB; never use it in "
            "production",
            action="agent.embedded",
            uri=server.uri,
            data="temporary (deleted at exit)" if server.temporary else str(server.directory),
            database=loaded.mongodb_database,
            collection=loaded.mongodb_collection,
        )
    if not loaded.handler and not loaded.handlers:
        raise fail(
            "HANDLER is required: set it to module:function, e.g. myapp.jobs:handle "
            "(or HANDLERS=type=module:function,... to route by type)"
        )
    if os.getcwd() not in sys.path:  # like uvicorn and celery: the working directory imports
        sys.path.insert(0, os.getcwd())
    try:
        jobs = _jobs(loaded)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        runner = build_handlers(loaded)
    except PullingAgentError as exc:
        raise fail(str(exc)) from None
    assert runner is not None  # HANDLER or HANDLERS is set
    try:
        return run_bounded(run_agent(loaded, runner, jobs=jobs))
    except ConfigError as exc:  # found once the agent starts: the URI, the health directory
        raise fail(str(exc)) from None
    finally:
        runner.close()


def _jobs(loaded: Any) -> list[Any]:
    """The scheduled jobs of ``JOBS_FILE`` and ``JOBS`` (ids unique across both)."""
    jobs: list[Any] = []
    if loaded.jobs_file is not None:
        from pulling_agent.scheduler.definitions import load_jobs_file

        jobs += load_jobs_file(loaded.jobs_file)
    if loaded.jobs:
        from pulling_agent.scheduler.factory import load_jobs_object

        declared = {job.id for job in jobs}
        for job in load_jobs_object(loaded.jobs):
            if job.id in declared:
                raise ConfigError(
                    f"JOBS={loaded.jobs}: job {job.id!r} is declared in JOBS_FILE too: "
                    "give each job one place"
                )
            jobs.append(job)
    return jobs


def demo(
    documents: Annotated[
        int, typer.Option(min=1, max=100_000, help="Sample documents to insert.")
    ] = 600,
    agents: Annotated[int, typer.Option(min=1, max=20, help="Agents to run side by side.")] = 3,
) -> None:
    """Start an embedded MongoDB-wire server, run agents on sample work, show the result
    (with MONGODB_URI set, the demo uses that server instead: database pulling_agent_demo,
    whose work collection it replaces)."""
    from pulling_agent.dev.demo import run_demo

    try:
        code = run_demo(documents=documents, agents=agents)
    except ConfigError as exc:  # MONGODB_URI the driver cannot parse
        raise fail(str(exc)) from None
    except PullingAgentError as exc:
        raise fail(str(exc), 1) from None
    raise typer.Exit(code)


def health(
    max_age: Annotated[float, typer.Option(help="Seconds the liveness file may be old.")] = 30,
    ready: Annotated[bool, typer.Option("--ready", help="Also require readiness.")] = False,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Health directory (default HEALTH_DIR).")
    ] = None,
) -> None:
    """Probe the health files: exit 0 when alive (and ready, with --ready), else 1."""
    from pulling_agent.runtime.health import DEFAULT_DIR, check

    where = directory or Path(os.environ.get("HEALTH_DIR", DEFAULT_DIR))
    report = check(where, max_age, require_ready=ready)
    typer.echo(report.message)
    raise typer.Exit(0 if report.healthy else 1)


def register(root: typer.Typer) -> None:
    for command in (run, demo, health):
        root.command()(command)
