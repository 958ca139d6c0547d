"""What the runtime and the stores agree on: claims, completions, and the store protocol.

A *claim* is a lease on one document: ``{owner, token, expires_at}`` written atomically with
``status: processing``. Every document claimed in one ``claim`` call shares one token, so a
batch is renewed with one write; every completion is fenced on ``(_id, token)``, so a late
finisher whose lease was taken over changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pulling_agent.queue.results import NOTHING, Kept
from pulling_agent.queue.spread import Spread

Document = dict[str, Any]
MALFORMED = "MalformedDocument"  # the error type of a dead-lettered malformed document


class Status(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # a handler's Skip/Cancel: final, kept and listable
    WAITING = "waiting"  # for its dependencies or its batch (queue.workflow); never claimed


FINISHED = (Status.PROCESSED, Status.FAILED, Status.CANCELLED)

# A document under a fleet-wide limit holds, while it is processing, one slot string per
# limit (queue.limits): of its type's limit, and of its key value's. Every write that takes
# a document out of ``processing`` unsets them with its lease, so a slot frees in the same
# write as the outcome.
LIMIT_SLOT = "limit_slot"
KEY_SLOT = "key_slot"
SLOT_FIELDS = (LIMIT_SLOT, KEY_SLOT)
UNLEASE = {"lease": "", LIMIT_SLOT: "", KEY_SLOT: ""}  # the $unset of a lease given up
UNFINISHED = (Status.PENDING, Status.PROCESSING, Status.WAITING)


class ClaimKind(StrEnum):
    """The three ways a document becomes claimable, each one plain filter."""

    FRESH = "fresh"  # pending, no available_at
    DUE_RETRY = "due_retry"  # pending, available_at <= now
    EXPIRED = "expired"  # processing, lease.expires_at < now (its agent died)
    ORPHANED = "orphaned"  # processing without a lease expiry (not written by an agent)


class OutcomeKind(StrEnum):
    PROCESSED = "processed"
    RETRY = "retry"  # a failure with attempts left: backoff
    FAILED = "failed"
    RESCHEDULE = "reschedule"  # the handler's Retry: later, attempt not consumed
    CANCELLED = "cancelled"  # the handler's Skip/Cancel


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str
    at: datetime
    attempt: int

    def as_document(self) -> Document:
        return {
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
            "at": self.at,
            "attempt": self.attempt,
        }


@dataclass(eq=False, slots=True)
class Claim:
    """One leased document. Identity equality: each claim object is one lease."""

    doc_id: Any
    token: str
    attempts: int
    document: Document
    kind: ClaimKind = ClaimKind.FRESH
    not_before: float = 0.0  # epoch seconds: when a rate limit lets its handler start
    paced_by: str = ""  # the limit that set not_before (agent or fleet)
    trace: Any = None  # (context, problem) of its trace_context, read once (runtime.tracing)


@dataclass(frozen=True, slots=True)
class Completion:
    """The outcome of one attempt, to be written fenced on ``(doc_id, token)``."""

    doc_id: Any
    token: str
    kind: OutcomeKind
    error: ErrorInfo | None = None
    errors: tuple[Document, ...] = field(default=())
    available_at: datetime | None = None
    reason: str = ""  # why a handler cancelled
    batch_id: str | None = None  # the batch the document belongs to (queue.workflow)
    dependents: bool = False  # documents wait for this one (as the claim read it)
    result: Kept = NOTHING  # a processed handler's return value (queue.results)
    # the attempt's span context, when traced: the outcome write links to it (runtime.tracing)
    trace: Any = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class CancelResult:
    cancelled: list[Any] = field(default_factory=list)  # were pending: cancelled now
    requested: list[Any] = field(default_factory=list)  # processing: their agent is told
    not_found: list[Any] = field(default_factory=list)  # finished already, or no such id


def cancel_update(by: str, now: datetime) -> Document:
    """A pending document cancelled from outside."""
    return {
        "$set": {
            "status": Status.CANCELLED.value,
            "cancelled_at": now,
            "cancel_reason": f"cancelled by {by}",
        },
        "$unset": {"available_at": "", **UNLEASE},
    }


def new_lease(owner: str, lease_seconds: float, now: datetime) -> Document:
    """A fresh lease sub-document with a new token, for one claim call."""
    return {
        "owner": owner,
        "token": uuid.uuid4().hex,
        "expires_at": now + timedelta(seconds=lease_seconds),
    }


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a document cannot be processed as it stands, and what to do about it."""

    field: str
    value_type: str
    reason: str
    fix: str

    def message(self) -> str:
        return f"{self.field}: {self.reason}"

    def as_error(self, at: datetime) -> Document:
        """The ``error`` sub-document of a dead-lettered document: only plain strings and
        a datetime, so the dead-letter write cannot fail the way the claim did."""
        return {
            "type": MALFORMED,
            "message": self.message(),
            "field": self.field,
            "value_type": self.value_type,
            "fix": self.fix,
            "traceback": "",
            "at": at,
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """A document the agent could not work with, and what it did about it."""

    doc_id: Any
    problem: Problem
    stage: str  # claim, complete, release, sweep
    dead_lettered: bool  # False: even the dead-letter write failed; the document is skipped


def claim_scope(type_field: str, types: list[str | None] | None) -> Document:
    """The filter every claim adds to claim only ``types`` (None: every document)."""
    return {} if types is None else {type_field: {"$in": types}}


def ignore_event(event: str, fields: Mapping[str, Any]) -> None:
    """The default ``WorkStore.on_workflow``: nobody listens."""
    return


class WorkStore(Protocol):
    """Storage for work documents. Every method is one or a few round trips.

    Implementations: :class:`~pulling_agent.queue.mongo.MongoWorkStore` (production) and
    :class:`~pulling_agent.queue.memory.MemoryWorkStore` (unit tests); one contract suite
    runs against both.
    """

    on_rejected: Callable[[Rejection], None]
    """Told of every document the store dead-lettered (or skipped) as malformed."""

    on_workflow: Callable[[str, Mapping[str, Any]], None]
    """Told when settling closed a batch (``batch_closed``: the batch's summary and its
    then document's id) or cancelled dependents (``dependents_cancelled``)."""

    lost_race: bool
    """The last ``claim`` came back short because other agents won its candidates in
    every round: there is work, look again soon rather than after ``POLL_INTERVAL``."""

    spread: Spread
    """Where fresh work is read: this agent's slice of the queue's head (queue.spread)."""

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes the queue needs (idempotent). Returns warnings, never raises
        for a refused index: the queue works without it, only slower."""

    async def ensure_retention(self, wanted: Mapping[str, float | None]) -> list[tuple[str, str]]:
        """Make the collection keep finished documents as ``wanted`` says (status ->
        seconds, None: for ever; queue.retention). Returns (level, message) to log."""

    async def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        now: datetime,
        kinds: Sequence[ClaimKind],
    ) -> list[Claim]:
        """Lease up to ``limit`` claimable documents, trying ``kinds`` in order. Atomic per
        document: no document is returned to two callers while both leases are valid."""

    async def ping(self) -> None:
        """One cheap round trip: does the store answer? (the breaker's half-open probe)"""

    def connection_problem(self) -> str | None:
        """Why the store's servers could not be reached last time, if the driver knows
        (e.g. connection refused), for a start-up that timed out before the driver gave up."""

    async def sweep(self, now: datetime) -> int:
        """Deal with documents no claim filter can match as they stand: a non-date
        ``available_at`` (an ISO-8601 string that fell due is cleared, anything else is
        dead-lettered) and a non-date ``lease.expires_at`` (handed back to pending).
        Returns how many documents it changed. Slow path: run it rarely."""

    async def renew(
        self,
        owner: str,
        token: str,
        expires_at: datetime,
        progress: Mapping[Any, Any] | None = None,
    ) -> int:
        """Extend every still-processing lease of ``token``, writing ``progress`` values
        (by ``_id``) in the same round trip. Returns how many leases were renewed."""

    async def complete(self, completions: Sequence[Completion], now: datetime) -> int:
        """Write outcomes in bulk, each fenced on its lease. Returns how many took effect."""

    async def written(self, completions: Sequence[Completion], now: datetime) -> int:
        """How many of ``completions`` are in the store as this agent wrote them at ``now``
        (after a write that failed but may have been applied: a retry then finds nothing
        to change, and those outcomes are applied, not lost)."""

    async def release(self, token: str, doc_ids: Sequence[Any], undo_attempt: bool) -> int:
        """Give leases back: documents return to ``pending`` at once. ``undo_attempt`` for
        documents whose handler never started."""

    async def cancel(self, doc_ids: Sequence[Any], by: str, now: datetime) -> CancelResult:
        """Cancel documents from outside: a pending one at once (status ``cancelled``), a
        processing one by request (``cancel_requested``: its agent sees it at the next
        renewal and cancels the handler cooperatively). Finished or unknown ids are
        reported as such."""

    async def cancel_requested(self, token: str) -> list[Any]:
        """Ids of this lease's documents whose cancellation was requested."""

    async def list_failed(self, limit: int) -> list[Document]:
        """Documents in the dead letter (``status: failed``), oldest failure first."""

    async def requeue(self, doc_ids: Sequence[Any] | None) -> int:
        """Put failed documents (all when ``doc_ids`` is None) back to ``pending`` with
        attempts reset. Returns how many."""

    async def revive_dependents(self, doc_ids: Sequence[Any], now: datetime) -> int:
        """After ``doc_ids`` were requeued: bring back, ``waiting`` again, the documents their
        failure cancelled (transitively; queue.workflow.revive). Returns how many."""

    async def counts(self) -> dict[str, int]:
        """Number of documents by status."""

    def batch_members(self, batch_id: str, page: int) -> AsyncIterator[Document]:
        """The members of a batch with their outcomes (``_id``, ``status``, ``result``,
        ``result_error``, ``error``, ``cancel_reason``), read ``page`` at a time: a
        100,000-member batch is never in memory at once."""

    async def close(self) -> None: ...
