"""The exact filters and updates the MongoDB store sends for claims and outcomes (pure).

Kept apart from :mod:`.mongo` so that what goes over the wire can be read (and tested by
command monitoring) in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pulling_agent.queue.model import (
    UNLEASE,
    ClaimKind,
    Completion,
    Document,
    OutcomeKind,
    Problem,
    Status,
)
from pulling_agent.queue.workflow import DEPENDENTS

FINAL = {
    OutcomeKind.PROCESSED: Status.PROCESSED.value,
    OutcomeKind.FAILED: Status.FAILED.value,
    OutcomeKind.CANCELLED: Status.CANCELLED.value,
}


def claim_filter(kind: ClaimKind, now: datetime) -> Document:
    """The filter that makes a document claimable as ``kind`` at ``now``."""
    if kind is ClaimKind.FRESH:
        return {"status": Status.PENDING.value, "available_at": None}
    if kind is ClaimKind.DUE_RETRY:
        return {"status": Status.PENDING.value, "available_at": {"$lte": now}}
    if kind is ClaimKind.ORPHANED:  # no lease, or a lease without an expiry: never renewed
        return {"status": Status.PROCESSING.value, "lease.expires_at": None}
    return {"status": Status.PROCESSING.value, "lease.expires_at": {"$lt": now}}


def dead_letter_update(problem: Problem, now: datetime) -> Document:
    """Fail a malformed document. Touches none of the fields that may be malformed
    (``attempts``, ``available_at``, ``errors``), so it cannot be refused the same way."""
    return {
        "$set": {
            "status": Status.FAILED.value,
            "failed_at": now,
            "error": problem.as_error(now),
        },
        "$unset": dict(UNLEASE),
    }


def leased_filter(doc_id: Any, token: str) -> Document:
    """The fence every completion and release carries: the document is still processing
    under this lease. ``doc_id`` may be a list, for a batch of documents of one lease."""
    match = {"$in": list(doc_id)} if isinstance(doc_id, list) else doc_id
    return {"_id": match, "lease.token": token, "status": Status.PROCESSING.value}


def completion_update(c: Completion, now: datetime) -> Document:
    if c.kind is OutcomeKind.PROCESSED:
        return {
            "$set": {"status": Status.PROCESSED.value, "processed_at": now, **c.result.fields},
            "$unset": {**UNLEASE, "available_at": "", "error": "", "cancel_requested": ""},
        }
    if c.kind is OutcomeKind.CANCELLED:
        return {
            "$set": {
                "status": Status.CANCELLED.value,
                "cancelled_at": now,
                "cancel_reason": c.reason,
            },
            "$unset": {**UNLEASE, "available_at": "", "cancel_requested": ""},
        }
    fields: Document = {}
    if c.error is not None:
        fields.update(error=c.error.as_document(), errors=list(c.errors))
    if c.kind is OutcomeKind.RESCHEDULE:  # the handler's Retry: the attempt is not consumed
        fields.update(status=Status.PENDING.value, available_at=c.available_at)
        return {
            "$set": fields,
            "$unset": {**UNLEASE, "cancel_requested": ""},
            "$inc": {"attempts": -1},
        }
    if c.kind is OutcomeKind.RETRY:
        fields.update(status=Status.PENDING.value, available_at=c.available_at)
        return {"$set": fields, "$unset": {**UNLEASE, "cancel_requested": ""}}
    fields.update(status=Status.FAILED.value, failed_at=now)
    return {"$set": fields, "$unset": {**UNLEASE, "available_at": "", "cancel_requested": ""}}


def outcome_filter(c: Completion, doc_id: Any = None) -> Document:
    """The fence of a completion. A final outcome of a document the claim saw without
    dependents also requires that none arrived since (``dependents`` absent): otherwise the
    write misses and the store completes it again, settling the new dependents
    (queue.workflow), so a dependent enqueued while its dependency ran is never forgotten."""
    fence = leased_filter(c.doc_id if doc_id is None else doc_id, c.token)
    if c.kind in FINAL and not c.dependents:
        fence[DEPENDENTS] = {"$exists": False}
    return fence
