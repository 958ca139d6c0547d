"""The fields the agent owns, checked as the untrusted input they are. Pure, no I/O.

Anyone can write a work document, so ``status``, ``attempts``, ``available_at`` and
``lease`` may hold any type and any size. These rules decide, for each shape, whether the
agent can work with it, must dead-letter it (``MalformedDocument``, naming the field and the
value's type), or recovers it; :func:`diagnose` explains to an operator (``pulling-agent
doctor``) why a document will never be processed as it stands.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pulling_agent.encoding import parse_time
from pulling_agent.queue.model import FINISHED, Document, Problem, Status
from pulling_agent.text import one_line

MAX_ATTEMPTS_VALUE = 1_000_000  # far above any MAX_ATTEMPTS, far below BSON's int limits
# $type aliases the sweep looks for where a date belongs (one plain query each: nx-27017
# rejects a $type list, MongoDB accepts both).
NON_DATE_TYPES = ("string", "number", "bool", "object", "array", "objectId", "binData")
FAR_LEASE = timedelta(days=1)  # a lease this far ahead was not written by an agent


def type_name(value: Any) -> str:
    """A BSON-ish name for a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):  # bson's Int64 included
        return "int" if -(2**31) <= value < 2**31 else "long"
    names = {float: "double", str: "string", dict: "object", list: "array"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    return one_line(repr(value), 60)


def check_attempts(doc: Document) -> Problem | None:
    """``attempts`` must be missing, null, or a whole number in [0, MAX_ATTEMPTS_VALUE]
    (a double such as ``2.0``, as shells write, is fine: ``$inc`` keeps it a number)."""
    value = doc.get("attempts")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Problem(
            "attempts",
            type_name(value),
            f"is a {type_name(value)} ({_shown(value)}), not a number",
            "set attempts to a whole number (0 to start afresh) or remove it",
        )
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return Problem(
            "attempts",
            "double",
            f"is {_shown(value)}, not a whole number",
            "set attempts to a whole number (0 to start afresh) or remove it",
        )
    if not 0 <= value <= MAX_ATTEMPTS_VALUE:
        return Problem(
            "attempts",
            type_name(value),
            f"is {_shown(value)}, outside 0..{MAX_ATTEMPTS_VALUE}",
            "set attempts to a whole number (0 to start afresh) or remove it",
        )
    return None


def priority_rank(doc: Document) -> tuple[int, Any]:
    """``priority`` as MongoDB sorts it (BSON type order first: a missing priority below
    every number, a string above them), for the in-memory store. Values of one type that
    do not compare (sub-documents, arrays) rank as equal."""
    value = doc.get("priority")
    if value is None:
        return (1, 0)
    if isinstance(value, bool):
        return (8, value)
    if isinstance(value, int | float):
        return (2, -math.inf if math.isnan(value) else value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, datetime):
        return (9, value.timestamp())
    ranks: dict[type, int] = {dict: 4, list: 5, bytes: 6}
    return (ranks.get(type(value), 7), 0)


def attempts_of(doc: Document) -> int:
    """``attempts`` as an int; call only after :func:`check_attempts` passed."""
    value = doc.get("attempts")
    return 0 if value is None else int(value)


def check_available_at(doc: Document) -> Problem | None:
    """``available_at`` must be missing, null, a date, or an ISO-8601 string (tolerated:
    JSON producers write those; the agent treats it as that time)."""
    value = doc.get("available_at")
    if value is None or parse_time(value) is not None:
        return None
    return Problem(
        "available_at",
        type_name(value),
        f"is a {type_name(value)} ({_shown(value)}), not a date: the document never falls due",
        "set available_at to a date (or remove it to process the document now)",
    )


def lease_expiry(doc: Document) -> datetime | None:
    """The lease's expiry as a datetime, or None when the lease is missing or malformed
    (which counts as expired: no agent writes a processing document without one)."""
    lease = doc.get("lease")
    if not isinstance(lease, dict):
        return None
    expires = lease.get("expires_at")
    return expires if isinstance(expires, datetime) else None


def diagnose(doc: Document, now: datetime, max_attempts: int) -> list[Problem]:
    """Why agents will never process ``doc`` as it stands (empty: they will, or they are
    done with it). For ``pulling-agent doctor``; the agents themselves dead-letter or
    recover what they can reach."""
    status = doc.get("status")
    if status in FINISHED or status == Status.WAITING:  # waits: queue.waits
        return []
    if status not in (Status.PENDING, Status.PROCESSING):
        shown = "missing" if "status" not in doc else f"{_shown(status)} ({type_name(status)})"
        return [
            Problem(
                "status",
                type_name(status),
                f"is {shown}; agents claim only status 'pending'",
                "set status to 'pending' to have it processed",
            )
        ]
    problems = [p for p in (check_attempts(doc),) if p is not None]
    if status == Status.PENDING:
        available = check_available_at(doc)
        if available is not None:
            problems.append(available)
        return problems
    expires = lease_expiry(doc)
    if expires is not None and expires - now > FAR_LEASE:
        problems.append(
            Problem(
                "lease.expires_at",
                "date",
                f"is {expires.isoformat()}, too far ahead for an agent's lease: the document "
                "stays processing until then",
                "set status to 'pending' and remove lease to have it processed again",
            )
        )
    return problems


def rejection_reason(exc: BaseException, doc: Document | None) -> Problem:
    """A document the server (or the BSON encoder) refused to write: name the field when a
    known check explains it, else quote the error."""
    if doc is not None:
        for check in (check_attempts, check_available_at):
            found = check(doc)
            if found is not None:
                return found
    return Problem(
        "document",
        type(exc).__name__,
        f"the update was refused: {one_line(exc, 300)}",
        "inspect the document's agent-owned fields (status, attempts, available_at, lease, "
        "errors) and its size",
    )


def same_instant(stored: Any, when: datetime) -> bool:
    """``stored`` is the datetime ``when`` as stored (BSON keeps milliseconds)."""
    if not isinstance(stored, datetime):
        return False
    aware = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
    return abs((aware - when).total_seconds()) < 0.001


def shows_outcome(doc: Document, kind: str, error_at: datetime | None, now: datetime) -> bool:
    """Whether ``doc`` holds the outcome ``kind`` written at ``now`` (or, for a failure,
    with the error recorded at ``error_at``)."""
    status = doc.get("status")
    if kind == "processed":
        return status == Status.PROCESSED and same_instant(doc.get("processed_at"), now)
    if kind == "cancelled":
        return status == Status.CANCELLED and same_instant(doc.get("cancelled_at"), now)
    if kind == "reschedule" and error_at is None:
        return status == Status.PENDING and same_instant(doc.get("available_at"), now)
    error = doc.get("error")
    at = error.get("at") if isinstance(error, dict) else None
    expected = Status.PENDING if kind == "retry" else Status.FAILED
    return status == expected and error_at is not None and same_instant(at, error_at)
