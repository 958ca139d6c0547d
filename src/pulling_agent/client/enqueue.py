"""Enqueueing, written once as a flow (:mod:`pulling_agent.queue.ops`) that the sync and the
async client run: plain jobs, jobs ``after`` other documents, and batches with a ``then`` job.

Round trips: one ``insert_many`` for plain jobs (plus the key index once, and a lookup when
keys were taken). With ``after``: one find of the dependencies (all must exist), one write
marking them ``dependents``, the insert, then one look at the dependencies again with its
releases (a dependency may have ended meanwhile: no lost wake-up). With ``then``: the then
document's insert before the members', and one write sealing the batch after them.

In the caller's transaction (``session=`` with a transaction started) every command is the
transaction's, and three things change, because any refused write aborts a MongoDB
transaction: the indexes are made first, outside it (an index build cannot join a
transaction on an existing collection; it writes no document); keys and given ``_id`` are
looked up in the transaction before the insert, so a duplicate is reported as one
(``created=False``) instead of being refused; and the dependencies are written every time
(``dependents_linked`` counted up), so an agent ending one while the transaction is open
conflicts with it and MongoDB makes one of them retry, instead of a release both miss.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pulling_agent.client.jobs import (
    KEY,
    KEY_INDEX,
    KEY_SPEC,
    WORKFLOW,
    Enqueued,
    EnqueueError,
    Inserted,
    InvalidJob,
    Job,
    as_jobs,
    build,
    index_error,
)
from pulling_agent.queue import workflow as wf
from pulling_agent.queue.indexes import WORKFLOW_INDEXES
from pulling_agent.queue.model import Document, Status
from pulling_agent.queue.ops import CreateIndex, Find, Flow, Insert, Update
from pulling_agent.text import safe_text

MAX_AFTER = 1_000  # dependencies of one document
MAX_AFTER_IDS = 10_000  # different dependencies in one call


def bound(results: list[Enqueued], collection: Any) -> list[Enqueued]:
    """``results`` knowing their collection, so that ``result()`` can wait for them."""
    members = [replace(r, collection=collection) for r in results]
    if isinstance(results, Batch):
        return Batch(members, results.batch_id, replace(results.then, collection=collection))
    return members


class Batch(list[Enqueued]):
    """What ``enqueue_many(..., then=job)`` returns: the members' results (a list, in input
    order) with the batch's id and the then document's result."""

    def __init__(self, members: Iterable[Enqueued], batch_id: str, then: Enqueued) -> None:
        super().__init__(members)
        self.batch_id = batch_id
        self.then = then


def _after_of(job: Job, n: int) -> list[Any]:
    after = job.after
    if after is None:
        return []
    if isinstance(after, str | bytes | Mapping) or not isinstance(after, list | tuple):
        raise InvalidJob(f"job {n}: after must be a list of document ids")
    if len(after) > MAX_AFTER:
        raise InvalidJob(f"job {n}: after lists {len(after)} documents; at most {MAX_AFTER}")
    if job.on_dependency_failure not in ("cancel", wf.RUN):
        raise InvalidJob(
            f"job {n}: on_dependency_failure must be 'cancel' or 'run' "
            f"(got {safe_text(job.on_dependency_failure, 40)!r})"
        )
    for dep in after:
        if wf.key_or_none(dep) is None:
            raise InvalidJob(
                f"job {n}: after holds {safe_text(dep, 60)!r}, which is not a document id"
            )
    return list(after)


def is_workflow(after: list[list[Any]], then: Document | None) -> bool:
    return then is not None or any(after)


def prepare(
    items: Iterable[Job | Mapping[str, Any]],
    type_field: str,
    then: Job | None,
    now: datetime | None = None,
    sent: Any = None,
) -> tuple[Inserted, list[list[Any]], Document | None]:
    """Every document, checked before any I/O: the members, each one's dependencies, and
    the then document (``waiting`` for the batch). ``now``: MongoDB's time
    (:mod:`client.clock`); this process's clock when not given. ``sent``: the call's
    ``send`` span (:func:`queue.tracecontext.sending`), told how many documents it has."""
    now = datetime.now(UTC) if now is None else now
    jobs = as_jobs(items)
    docs = [build(job, now, type_field) for job in jobs]
    after = [_after_of(job, n) for n, job in enumerate(jobs)]
    if len({wf.dep_key(d) for deps in after for d in deps}) > MAX_AFTER_IDS:
        raise InvalidJob(f"one call may name at most {MAX_AFTER_IDS} different dependencies")
    for job, doc in zip(jobs, docs, strict=True):
        if job.on_dependency_failure == wf.RUN and job.after:
            doc[wf.IF_FAILED] = wf.RUN
    then_doc = None
    if then is not None:
        if not isinstance(then, Job):
            raise InvalidJob(f"then must be a Job (got {type(then).__name__})")
        if not docs:
            raise InvalidJob("a batch needs at least one job before its then job")
        if then.key is not None or then.after:
            raise InvalidJob("the then job waits for its batch: give it no key and no after")
        then_doc = build(then, now, type_field)
        then_doc["status"] = Status.WAITING.value
        batch_id = uuid.uuid4().hex
        then_doc[wf.BATCH] = {"id": batch_id, "size": len(docs), wf.STATE: wf.OPEN_BATCH}
        then_doc[wf.BATCH].update(dict.fromkeys(wf.OUTCOMES, 0))
        for doc in docs:
            doc[wf.BATCH_ID] = batch_id
    if sent is not None:
        sent.set_attribute("messaging.batch.message_count", len(docs) + (then_doc is not None))
    return Inserted(docs, ["_id" in doc for doc in docs], type_field), after, then_doc


def _link(docs: list[Document], after: list[list[Any]], transaction: bool) -> Flow[list[Document]]:
    """Check that every dependency exists, mark them, make their dependents ``waiting``.
    Raises :class:`InvalidJob` (nothing written) when one does not exist."""
    wanted = {wf.dep_key(d): d for deps in after for d in deps}
    if not wanted:
        return []
    found = yield Find({"_id": {"$in": list(wanted.values())}}, {"_id": 1})
    stored = {wf.dep_key(f["_id"]): f["_id"] for f in found}
    missing = [wanted[k] for k in wanted if k not in stored]
    if missing:
        shown = ", ".join(safe_text(m, 60) for m in missing[:5])
        raise InvalidJob(f"{len(missing)} of the documents named in after do not exist: {shown}")
    ids = {"_id": {"$in": list(stored.values())}}
    if transaction:  # a write to each, whatever it holds: see the module's docstring
        yield Update(ids, {"$set": {wf.DEPENDENTS: True}, "$inc": {wf.LINKED: 1}}, many=True)
    else:
        yield Update(
            {**ids, wf.DEPENDENTS: {"$exists": False}}, {"$set": {wf.DEPENDENTS: True}}, many=True
        )
    waiting = []
    for doc, deps in zip(docs, after, strict=True):
        if not deps:
            continue
        keys = {wf.dep_key(d): stored[wf.dep_key(d)] for d in deps}
        doc.update(status=Status.WAITING.value)
        doc[wf.AFTER] = list(keys.values())
        doc[wf.WAITING_ON] = keys
        doc[wf.WAITING] = len(keys)
        waiting.append(doc)
    return waiting


def index_flow(indexes: list[str]) -> Flow[None]:
    """The indexes this call needs (:func:`~pulling_agent.client.jobs.indexes_needed`)."""
    if KEY in indexes:
        refused = yield CreateIndex(KEY_SPEC.keys, KEY_INDEX, KEY_SPEC.options)
        if refused is not None:
            raise index_error(refused)
    if WORKFLOW in indexes:  # for the agents' settling: slower without, never wrong
        for name, spec in WORKFLOW_INDEXES.items():
            yield CreateIndex(spec.keys, name, spec.options)


ABORTED = (
    "; a refused write aborts the transaction: nothing of it will commit (run it again "
    "once the cause is fixed)"
)


def enqueue_flow(
    batch: Inserted,
    after: list[list[Any]],
    then: Document | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    transaction: bool = False,
) -> Flow[list[Enqueued]]:
    """Everything but the indexes (:func:`index_flow`); ``transaction``: the commands are
    the caller's transaction's (see the module's docstring)."""
    waiting = yield from _link(batch.docs, after, transaction)
    if then is not None:
        refused = yield Insert([then])
        if refused is not None:
            first = (refused.get("writeErrors") or [{}])[0]
            raise EnqueueError(
                f"the then job was not enqueued: {safe_text(first.get('errmsg', ''), 300)}"
                + (ABORTED if transaction else ""),
                [],
            )
    found: list[Document] = []
    existing = batch.existing() if transaction else None
    if existing is not None:
        found = yield Find(existing, batch.projection())
        batch.taken(found)
    fresh = batch.fresh()
    details = (yield Insert(fresh)) if fresh else None
    if details is not None:
        batch.refusals(details)
        if transaction:
            raise EnqueueError(batch.refusal_message() + ABORTED, [])
    query = None if transaction else batch.lookup()
    if query is not None:
        found = yield Find(query, batch.projection())
    failure: EnqueueError | None = None
    try:
        results = batch.results(found)
    except EnqueueError as exc:
        failure, results = exc, [r for r in exc.results if r is not None]
    now = clock()
    inserted = {id(d) for i, d in enumerate(batch.docs) if _created(batch, i)}
    yield from wf.resolve([d for d in waiting if id(d) in inserted], now, everywhere=False)
    if then is not None:
        results = yield from _seal(then, batch, results, now)
    if failure is not None:
        raise failure
    return results


def _created(batch: Inserted, index: int) -> bool:
    return index not in batch.refused and index not in batch.duplicates


def _seal(
    then: Document, batch: Inserted, results: list[Enqueued], now: datetime
) -> Flow[list[Enqueued]]:
    """Fix the batch's size to the members really inserted, then close it if they have all
    ended already (or none was new)."""
    size = sum(_created(batch, i) for i in range(len(batch.docs)))
    sealed = {**then[wf.BATCH], "size": size, wf.STATE: wf.SEALED}
    if size == 0:  # e.g. a retried call whose keyed members are all there already
        yield Update(
            {"_id": then["_id"], "status": Status.WAITING.value},
            {
                "$set": {
                    "status": Status.CANCELLED.value,
                    "cancelled_at": now,
                    "cancel_reason": "no member of its batch was enqueued by this call "
                    "(all were duplicates or refused)",
                    wf.BATCH: sealed,
                }
            },
        )
        return Batch(results, sealed["id"], Enqueued(then["_id"], False))
    yield Update(
        {"_id": then["_id"], "status": Status.WAITING.value},
        {"$set": {f"{wf.BATCH}.size": size, f"{wf.BATCH}.{wf.STATE}": wf.SEALED}},
    )
    yield from wf.close(then["_id"], sealed, now)
    return Batch(results, sealed["id"], Enqueued(then["_id"], True))
