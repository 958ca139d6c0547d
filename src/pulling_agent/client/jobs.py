"""What a producer writes: one work document per job, checked before anything is sent.
Pure, no I/O: :mod:`pulling_agent.client` (sync) and :mod:`pulling_agent.client.aio`
(async) share it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from pulling_agent.client.waiting import wait, wait_async
from pulling_agent.errors import InvalidJob as InvalidJob  # re-exported: raised here
from pulling_agent.errors import PullingAgentError
from pulling_agent.queue import workflow
from pulling_agent.queue.indexes import INDEXES, KEY_FIELD, PRIORITY_FIELD, IndexSpec
from pulling_agent.queue.model import SLOT_FIELDS, Document, Status
from pulling_agent.queue.results import RESULT, RESULT_ERROR
from pulling_agent.queue.tracecontext import TRACE, carrier
from pulling_agent.text import safe_text

KEY_INDEX = "pulling_agent_enqueue_key"
KEY_SPEC: IndexSpec = INDEXES[KEY_INDEX]
MAX_KEY_CHARS = 512
MAX_TYPE_CHARS = 200
MAX_PRIORITY = 1_000_000
MAX_DELAY = timedelta(days=3_650)
DUPLICATE_KEY = 11000
# fields the agents own (or the enqueue options set): a payload may not carry them
RESERVED = frozenset(
    {
        "status",
        "attempts",
        "lease",
        "available_at",
        "error",
        "errors",
        "processed_at",
        "failed_at",
        "cancelled_at",
        "cancel_reason",
        "cancel_requested",
        "progress",
        "enqueued_at",
        RESULT,
        RESULT_ERROR,
        TRACE,
        KEY_FIELD,
        PRIORITY_FIELD,
        *SLOT_FIELDS,
        *workflow.FIELDS,
    }
)


class EnqueueError(PullingAgentError):
    """MongoDB refused some documents (other than as duplicates). ``results`` holds, in
    input order, what was enqueued (``None`` where a document was refused)."""

    def __init__(self, message: str, results: list[Enqueued | None]) -> None:
        super().__init__(message)
        self.results = results


@dataclass(frozen=True, slots=True)
class Job:
    """One document to enqueue, with its options (see :func:`pulling_agent.client.enqueue`)."""

    payload: Mapping[str, Any]
    key: str | None = None
    type: str | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    priority: int | None = None
    after: Sequence[Any] | None = None  # ids of documents that must be processed first
    on_dependency_failure: str = "cancel"  # or "run": a failed dependency does not cancel it


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The document a job became. ``created`` is False when a document with the same
    ``key`` (or ``_id``) was there already: nothing was written, ``id`` is that document's."""

    id: Any
    created: bool
    key: str | None = None
    collection: Any = field(default=None, repr=False, compare=False)  # where it was enqueued

    def result(
        self, timeout: float = 60.0, *, change_stream: bool | None = None, poll_max: float = 1.0
    ) -> Any:
        """Wait for the document's outcome (:mod:`pulling_agent.client.waiting`): its result,
        or the error it ended with. From :mod:`pulling_agent.client.aio`: ``await`` it."""
        if self.collection is None:
            raise InvalidJob("this Enqueued was not returned by enqueue: use client.wait()")
        if isinstance(self.collection, AsyncCollection):
            return wait_async(
                self.collection, self.id, timeout, change_stream=change_stream, poll_max=poll_max
            )
        return wait(
            self.collection, self.id, timeout, change_stream=change_stream, poll_max=poll_max
        )


def as_jobs(items: Iterable[Job | Mapping[str, Any]]) -> list[Job]:
    jobs = []
    for n, item in enumerate(items):
        if isinstance(item, Job):
            jobs.append(item)
        elif isinstance(item, Mapping):
            jobs.append(Job(item))
        else:
            raise InvalidJob(f"job {n}: give a Job or a mapping (got {type(item).__name__})")
    return jobs


def _due(job: Job, now: datetime) -> datetime | None:
    """``available_at`` for a delayed job; None when it is due at once (fresh work, no
    wait for the next due-work poll)."""
    if job.delay is not None and job.run_at is not None:
        raise InvalidJob("give delay or run_at, not both")
    if job.run_at is not None:
        when = job.run_at
        if not isinstance(when, datetime):
            raise InvalidJob(f"run_at must be a datetime (got {type(when).__name__})")
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidJob("run_at must be timezone-aware, e.g. datetime.now(UTC)")
        return when if when > now else None
    if job.delay is None:
        return None
    delay = job.delay
    if isinstance(delay, bool) or not isinstance(delay, int | float | timedelta):
        raise InvalidJob(f"delay must be seconds or a timedelta (got {type(delay).__name__})")
    if not isinstance(delay, timedelta):
        if not math.isfinite(delay):
            raise InvalidJob(f"delay must be a finite number of seconds (got {delay})")
        delay = timedelta(seconds=min(float(delay), MAX_DELAY.total_seconds() + 1))
    if delay < timedelta(0) or delay > MAX_DELAY:
        raise InvalidJob(f"delay must be between 0 and {MAX_DELAY.days} days")
    return now + delay if delay > timedelta(0) else None


def option_text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidJob(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def build(job: Job, now: datetime, type_field: str = "type") -> Document:
    """The document for ``job``: its payload plus ``status: pending`` and the options."""
    if not isinstance(job.payload, Mapping):
        raise InvalidJob(f"the payload must be a mapping (got {type(job.payload).__name__})")
    doc: Document = {}
    for name, value in job.payload.items():
        if not isinstance(name, str):
            raise InvalidJob(f"payload keys must be strings (got {safe_text(name, 40)!r})")
        if name in RESERVED:
            raise InvalidJob(
                f"the payload has {name!r}, a field the agents own: "
                + (
                    f"use the {name.removeprefix('enqueue_')} option"
                    if name in (KEY_FIELD, PRIORITY_FIELD, "available_at")
                    else "rename it"
                )
            )
        doc[name] = value
    if job.type is not None:
        kind = option_text("type", job.type, MAX_TYPE_CHARS)
        if type_field in doc and doc[type_field] != kind:
            raise InvalidJob(f"the payload's {type_field!r} differs from type={kind!r}")
        doc[type_field] = kind
    if job.key is not None:
        doc[KEY_FIELD] = option_text("key", job.key, MAX_KEY_CHARS)
    if job.priority is not None:
        p = job.priority
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_PRIORITY:
            raise InvalidJob(f"priority must be a whole number from 0 to {MAX_PRIORITY}")
        doc[PRIORITY_FIELD] = p
    due = _due(job, now)
    if due is not None:
        doc["available_at"] = due
    doc["status"] = Status.PENDING.value
    doc["attempts"] = 0
    doc["enqueued_at"] = now
    traced = carrier()  # the producer's span, when one is active (queue.tracecontext)
    if traced is not None:
        doc[TRACE] = traced
    return doc


_indexed: set[tuple[int, str, str]] = set()  # (client, namespace, kind) made in this process
KEY, WORKFLOW = "key", "workflow"


def indexes_needed(collection: Any, keyed: bool, workflow: bool) -> list[str]:
    """The kinds of index (``key``, ``workflow``) to ensure before this call's writes: each
    once per collection and client in a process."""
    where = (id(collection.database.client), collection.full_name)
    wanted = [KEY] * keyed + [WORKFLOW] * workflow
    return [kind for kind in wanted if (*where, kind) not in _indexed]


def indexes_made(collection: Any, kinds: list[str]) -> None:
    where = (id(collection.database.client), collection.full_name)
    _indexed.update((*where, kind) for kind in kinds)


def in_transaction(collection: Any, session: Any, expected: type) -> bool:
    """Check the caller's ``session`` for ``collection``; whether a transaction is open on
    it (then every command of the call is the transaction's)."""
    if session is None:
        return False
    if not isinstance(session, expected):
        raise InvalidJob(
            f"session must be a {expected.__module__}.{expected.__name__} "
            f"(got {type(session).__name__}): the sync client takes a MongoClient's session, "
            "pulling_agent.client.aio an AsyncMongoClient's"
        )
    if getattr(session, "client", None) is not collection.database.client:
        raise InvalidJob(
            "session belongs to another client than the collection's: start it from the "
            "collection's client (collection.database.client.start_session())"
        )
    return bool(getattr(session, "in_transaction", False))


def index_error(exc: OperationFailure) -> EnqueueError:
    return EnqueueError(
        f"cannot create the unique index {KEY_INDEX} on {KEY_FIELD}, so keys cannot make "
        f"enqueue idempotent ({exc.code}): {safe_text(exc.details, 300)}",
        [],
    )


@dataclass
class Inserted:
    """What one ``insert_many(ordered=False)`` did with ``docs``: which were new, which
    were duplicates (to look up by key), and the first other refusal."""

    docs: list[Document]
    given_ids: list[bool]  # the payload had its own _id (else the driver made one)
    type_field: str = "type"
    details: Mapping[str, Any] | None = None
    duplicates: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    sent: list[int] | None = None  # the indexes inserted, when not all of them (fresh)
    known: list[Document] = field(default_factory=list)  # documents that hold taken keys

    @property
    def keyed(self) -> bool:
        """Whether the unique key index must exist before the insert."""
        return any(KEY_FIELD in doc for doc in self.docs)

    def existing(self) -> Document | None:
        """The filter of the documents that hold this call's keys or given ``_id`` already
        (looked up before the insert in a transaction, which a duplicate would abort)."""
        keys = [doc[KEY_FIELD] for doc in self.docs if KEY_FIELD in doc]
        ids = [doc["_id"] for doc, given in zip(self.docs, self.given_ids, strict=True) if given]
        clauses = [{KEY_FIELD: {"$in": keys}}] * bool(keys) + [{"_id": {"$in": ids}}] * bool(ids)
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$or": clauses}

    def taken(self, found: Iterable[Document]) -> None:
        """Mark as duplicates the documents whose key or given ``_id`` is in ``found``, or
        in a document earlier in this call (an insert would refuse them)."""
        self.known = list(found)
        keys = {doc[KEY_FIELD] for doc in self.known if KEY_FIELD in doc}
        ids = {workflow.dep_key(doc["_id"]) for doc in self.known}
        for i, doc in enumerate(self.docs):
            key, given = doc.get(KEY_FIELD), self.given_ids[i]
            if (key is not None and key in keys) or (given and workflow.dep_key(doc["_id"]) in ids):
                self.duplicates.append(i)
                continue
            if key is not None:
                keys.add(key)
                doc.setdefault("_id", ObjectId())  # as the driver's insert would
                self.known.append(
                    {"_id": doc["_id"], KEY_FIELD: key, self.type_field: doc.get(self.type_field)}
                )
            if given:
                ids.add(workflow.dep_key(doc["_id"]))

    def fresh(self) -> list[Document]:
        """The documents to insert: all but the duplicates :meth:`taken` found."""
        if not self.duplicates:
            return self.docs
        duplicates = set(self.duplicates)
        self.sent = [i for i in range(len(self.docs)) if i not in duplicates]
        return [self.docs[i] for i in self.sent]

    def refusals(self, details: Mapping[str, Any]) -> None:
        """Read a ``BulkWriteError``'s details: duplicates and other refusals."""
        self.details = details
        for error in details.get("writeErrors", []):
            index = int(error["index"])
            if self.sent is not None:
                index = self.sent[index]
            if error.get("code") == DUPLICATE_KEY:
                self.duplicates.append(index)
            else:
                self.refused[index] = safe_text(error.get("errmsg", ""), 300)

    def refusal_message(self) -> str:
        """What MongoDB refused, for a transaction that its refusal aborted."""
        errors = (self.details or {}).get("writeErrors") or [{}]
        return (
            f"MongoDB refused {len(errors)} of the {len(self.sent or self.docs)} documents "
            f"inserted: {safe_text(errors[0].get('errmsg', ''), 300)}"
        )

    def lookup(self) -> Document | None:
        """The filter that finds the documents the duplicates' keys belong to."""
        keys = [self.docs[i][KEY_FIELD] for i in self.duplicates if KEY_FIELD in self.docs[i]]
        return {KEY_FIELD: {"$in": keys}} if keys else None

    def projection(self) -> Document:
        """What :meth:`results` needs of those documents."""
        return {KEY_FIELD: 1, self.type_field: 1}

    def results(self, found: Iterable[Document]) -> list[Enqueued]:
        """In input order. Raises :class:`EnqueueError` when any document was refused,
        among them one whose key belongs to a document of another type: keys are unique
        per collection, across types, so a key reused for another type would otherwise
        drop the new job silently."""
        by_key = {doc[KEY_FIELD]: doc for doc in [*self.known, *found] if KEY_FIELD in doc}
        results: list[Enqueued | None] = []
        duplicates = set(self.duplicates)
        for i, doc in enumerate(self.docs):
            key = doc.get(KEY_FIELD)
            if i in self.refused:
                results.append(None)
            elif i not in duplicates:
                results.append(Enqueued(doc["_id"], True, key))
            elif key is not None and key in by_key:
                other, mine = by_key[key].get(self.type_field), doc.get(self.type_field)
                if other != mine:
                    self.refused[i] = (
                        f"key {safe_text(key, 100)!r} belongs to a document of type "
                        f"{safe_text(other, 100)!r}, not {safe_text(mine, 100)!r} "
                        "(keys are unique per collection, across types: put the type in the "
                        "key, e.g. 'invoice:order-1')"
                    )
                    results.append(None)
                else:
                    results.append(Enqueued(by_key[key]["_id"], False, key))
            elif self.given_ids[i]:  # the payload's own _id was taken
                results.append(Enqueued(doc["_id"], False, key))
            else:
                self.refused[i] = "its key's document was deleted while this call ran"
                results.append(None)
        if self.refused:
            first = min(self.refused)
            raise EnqueueError(
                f"{len(self.refused)} of {len(self.docs)} documents not enqueued; "
                f"document {first}: {self.refused[first]}",
                results,
            )
        return [r for r in results if r is not None]
