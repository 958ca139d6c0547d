"""Every BSON value as JSON, one way everywhere (API responses, ``--json`` output): dates
as ISO-8601 with their zone (UTC when stored without one), ObjectId, UUID and Decimal128
as strings, binary as base64, 64-bit integers as integers. A value of an unexpected type
becomes text rather than an error: one odd document must not fail a whole response."""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import Binary, Decimal128, ObjectId, Timestamp

from pulling_agent.text import safe_text

DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}


def parse_duration(text: str) -> float | None:
    """Seconds in ``90``, ``90s``, ``5m``, ``2h`` or ``1.5d``; None when it is none of those."""
    match = DURATION.fullmatch(text)
    if match is None or not math.isfinite(float(match[1])):
        return None
    return float(match[1]) * DURATION_UNITS[match[2]]


def duration_text(seconds: float) -> str:
    """``7d``, ``12h``, ``90m``, ``45s``: the largest whole unit (as RETAIN_* is written)."""
    for unit in ("d", "h", "m"):
        size = DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_time(value: Any) -> datetime | None:
    """A datetime, or a string holding an ISO-8601 date-time (read as UTC when it has no
    offset); None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and 0 < len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def iso(value: Any) -> Any:
    """A stored time as ISO-8601 with its zone; a string holding one is normalised
    (some servers hand back dates written with ``$set`` as text); anything else as is."""
    parsed = parse_time(value)
    return parsed.isoformat() if parsed is not None else value


def to_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # bson's Int64 included
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, ObjectId | uuid.UUID | Decimal128):
        return str(value)
    if isinstance(value, Binary) and value.subtype in (3, 4):
        return str(value.as_uuid(value.subtype))
    if isinstance(value, bytes):  # Binary included
        return base64.b64encode(value).decode()
    if isinstance(value, Timestamp):
        return {"t": value.time, "i": value.inc}
    if isinstance(value, Mapping):
        return {safe_text(k, 200): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return safe_text(value)


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else empty: for sub-documents anyone may have written."""
    return dict(value) if isinstance(value, Mapping) else {}


def as_number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value) if math.isfinite(value) else default


def id_candidates(raw: str) -> list[Any]:
    """An ``_id`` typed on a command line or in a URL may be a string, an ObjectId or an
    integer: every reading of it."""
    candidates: list[Any] = [raw]
    if ObjectId.is_valid(raw):
        candidates.append(ObjectId(raw))
    if raw.lstrip("-").isdigit() and len(raw) < 20:
        candidates.append(int(raw))
    return candidates
