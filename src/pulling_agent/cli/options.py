"""What every command reads: the settings (exit 2 and one line when they are invalid),
the options several command groups share, and jobs as typed on a command line
(``pulling-agent enqueue``): payloads in (relaxed) Extended JSON and durations like ``90``,
``30s``, ``5m``, ``2h``, ``1d``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from bson import json_util

from pulling_agent.config import Settings, load_settings
from pulling_agent.encoding import parse_duration as parse_duration_seconds
from pulling_agent.errors import ConfigError, InvalidJob
from pulling_agent.logs import configure_logging
from pulling_agent.text import print_error, safe_text

if TYPE_CHECKING:
    from pulling_agent.client.jobs import Job

EXIT_CONFIG = 2
DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[
    str,
    typer.Option(envvar="PULLING_AGENT_URL", help="An agent's API (any agent of the fleet)."),
]
Token = Annotated[
    str | None,
    typer.Option(envvar="PULLING_AGENT_TOKEN", help="API token (Authorization: Bearer)."),
]
MongoUri = Annotated[
    str | None,
    typer.Option(
        "--mongodb-uri",
        help="Talk to MongoDB directly (MONGODB_DATABASE and MONGODB_COLLECTION from the env).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    """Say what went wrong on one line of stderr; the exit to raise (2: fix the input)."""
    print_error(f"pulling-agent: {message}")
    return typer.Exit(code)


def settings(**overrides: Any) -> Settings:
    """The settings from the environment (and ``overrides``), logging configured; invalid
    settings exit 2 with one line naming the variable and the fix."""
    try:
        loaded = load_settings(**overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    configure_logging(loaded.log_level, loaded.log_format, loaded.secrets())
    return loaded


JSON_OPTIONS = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """``90`` or ``90s`` seconds, ``5m``, ``2h``, ``1.5d``."""
    seconds = parse_duration_seconds(text)
    if seconds is None:
        raise InvalidJob(
            f"--delay {safe_text(text, 40)!r}: use seconds or a number with s, m, h or d "
            "(e.g. 90, 30s, 5m, 2h)"
        )
    return timedelta(seconds=seconds)


def parse_payload(text: str, where: str = "the payload") -> dict[str, Any]:
    """One JSON object (Extended JSON: ``{"$date": ...}``, ``{"$oid": ...}`` are read as
    BSON values)."""
    try:
        value = json_util.loads(text, json_options=JSON_OPTIONS)
    except (ValueError, TypeError) as exc:
        raise InvalidJob(f"{where} is not JSON: {safe_text(exc, 200)}") from None
    if not isinstance(value, dict):
        raise InvalidJob(f"{where} must be a JSON object (got {type(value).__name__})")
    return value


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """JSON lines, one payload each; blank lines are skipped."""
    return [parse_payload(line, f"line {n}") for n, line in enumerate(lines, 1) if line.strip()]


def command_jobs(
    payload: str,
    stdin: str | None,
    *,
    key: str | None,
    kind: str | None,
    delay: str | None,
    priority: int | None,
    type_field: str,
    after: list[Any] | None = None,
    on_dependency_failure: str = "cancel",
) -> list[Job]:
    """The jobs of one ``pulling-agent enqueue``, checked (:class:`InvalidJob` before any
    I/O): ``payload`` is a JSON object, or ``-`` for the JSON lines in ``stdin``."""
    from pulling_agent.client.enqueue import prepare  # pymongo: only for this command
    from pulling_agent.client.jobs import Job

    payloads = parse_lines(stdin.splitlines()) if stdin is not None else [parse_payload(payload)]
    if key is not None and len(payloads) > 1:
        raise InvalidJob("--key names one document: enqueue keyed documents one at a time")
    wait = parse_duration(delay) if delay is not None else None
    jobs = [Job(p, key, kind, wait, None, priority, after, on_dependency_failure) for p in payloads]
    prepare(jobs, type_field, None)
    return jobs
