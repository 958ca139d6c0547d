"""Jobs as typed on a command line (``pulling-agent enqueue``): payloads in (relaxed)
Extended JSON and durations like ``90``, ``30s``, ``5m``, ``2h``, ``1d``. Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, timedelta
from typing import Any

from bson import json_util

from pulling_agent.client.jobs import InvalidJob, Job, prepare
from pulling_agent.text import safe_text

UNITS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}
JSON_OPTIONS = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)
DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_duration(text: str) -> timedelta:
    """``90`` or ``90s`` seconds, ``5m``, ``2h``, ``1.5d``."""
    match = DURATION.fullmatch(text)
    if match is None or not math.isfinite(float(match[1])):
        raise InvalidJob(
            f"--delay {safe_text(text, 40)!r}: use seconds or a number with s, m, h or d "
            "(e.g. 90, 30s, 5m, 2h)"
        )
    return timedelta(seconds=float(match[1]) * UNITS[match[2]])


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
) -> list[Job]:
    """The jobs of one ``pulling-agent enqueue``, checked (:class:`InvalidJob` before any
    I/O): ``payload`` is a JSON object, or ``-`` for the JSON lines in ``stdin``."""
    payloads = parse_lines(stdin.splitlines()) if stdin is not None else [parse_payload(payload)]
    if key is not None and len(payloads) > 1:
        raise InvalidJob("--key names one document: enqueue keyed documents one at a time")
    wait = parse_duration(delay) if delay is not None else None
    jobs = [Job(p, key, kind, wait, None, priority) for p in payloads]
    prepare(jobs, type_field)
    return jobs
