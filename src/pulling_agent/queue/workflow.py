"""Dependencies and batches: state in the work collection, settled by the writers of outcomes.

A document enqueued ``after`` others is inserted ``waiting`` with ``waiting_on``, a
sub-document ``{key: id}`` of the dependencies not yet processed, and ``waiting``, how many.
Every dependency carries ``dependents: true``. When a dependency ends, the agent that wrote
its outcome *settles* it in the same flush: one ordered ``bulk_write`` unsets its key in its
dependents (fenced on the key being there, so twice is once) and promotes every waiting
document whose count reached 0 to ``pending``. A dependency that ends failed or cancelled
cancels its waiting dependents instead (transitively), except those enqueued with
``on_dependency_failure="run"``, which it releases like a processed one.

A batch (``enqueue_many(..., then=job)``) is its members, each with ``batch_id``, and the
*then* document, inserted first as ``waiting`` with ``batch: {id, size, state, processed,
failed, cancelled}``. Each flush adds its members' outcomes to those counters with one
``find_one_and_update`` per batch (progress); when the counters reach the size, the batch is
closed if no member is unfinished: the counts are taken again from the members themselves
and the then document becomes ``pending`` with them, fenced on ``status: waiting`` - exactly
once, whoever gets there first.

Keys are hashes of the BSON value of the id (``waiting_on.<key>``), so the release is a
plain ``$exists`` on a path, idempotent, and a counter says when nothing is left - no
array matching, ``$size`` or pipeline update (which nx-27017 lacks as well).

A crash between an outcome and its settling leaves dependents waiting and counters short:
every agent's sweep repairs both (:func:`repair`), so nothing waits longer than
``SWEEP_INTERVAL`` after its agent died. The flows here are generators of :mod:`.ops`,
run by the async store and by both producer clients alike.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import bson
from bson.errors import InvalidDocument
from pymongo import UpdateMany, UpdateOne

from pulling_agent.queue.model import FINISHED, UNFINISHED, Completion, Document, Status
from pulling_agent.queue.ops import Aggregate, Bulk, Bump, Find, Flow, Note, Update
from pulling_agent.text import safe_text

AFTER = "after"  # the dependencies as enqueued (kept for display)
WAITING_ON = "waiting_on"  # {key: id} of the dependencies not processed yet
WAITING = "waiting"  # how many keys are left in waiting_on
DEPENDENTS = "dependents"  # true on a document others wait for
# counted up on a dependency by every transactional enqueue naming it: a write each time, so
# a transaction linking it and an agent ending it meanwhile conflict (one of them retries)
LINKED = "dependents_linked"
IF_FAILED = "on_dependency_failure"  # "run": a failed dependency releases instead of cancelling
RUN = "run"
CANCELLED_BY = "cancelled_by_dependency"  # the key of the dependency whose failure cancelled it
BATCH_ID = "batch_id"  # on every member of a batch
BATCH = "batch"  # on a batch's then document: {id, size, state, processed, failed, cancelled}
STATE = "state"  # of a batch: open (members being enqueued), sealed (size final), closed
OPEN_BATCH, SEALED, CLOSED = "open", "sealed", "closed"
OUTCOMES = tuple(s.value for s in FINISHED)
OPEN = [s.value for s in UNFINISHED]
REPAIR_MAX = 500  # waiting documents (and open batches) looked at per sweep
READY = {"status": Status.WAITING.value, WAITING: 0}
PROMOTE = {"$set": {"status": Status.PENDING.value}, "$unset": {WAITING: "", WAITING_ON: ""}}
FIELDS = (
    AFTER,
    WAITING_ON,
    WAITING,
    DEPENDENTS,
    LINKED,
    IF_FAILED,
    CANCELLED_BY,
    BATCH_ID,
    BATCH,
)


def dep_key(doc_id: Any) -> str:
    """The field name standing for ``doc_id`` in ``waiting_on``: type-aware (5 and "5"
    differ), equal for the numbers MongoDB's ``_id`` treats as equal (5, 5.0, Int64(5))."""
    value = doc_id
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = int(value)  # Int64 -> int: one encoding per number
    return "d" + hashlib.blake2b(bson.encode({"v": value}), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Ended:
    """A document that reached a final status, with what settling it needs."""

    doc_id: Any
    outcome: str  # processed, failed or cancelled
    batch_id: str | None = None
    dependents: bool = False


def annotate(completion: Completion, document: Mapping[str, Any]) -> Completion:
    """``completion`` with what the claimed ``document`` says about its workflow (the same
    object when nothing: no cost for documents outside workflows)."""
    batch_id = document.get(BATCH_ID)
    dependents = DEPENDENTS in document
    if not dependents and not isinstance(batch_id, str):
        return completion
    return replace(
        completion,
        batch_id=batch_id if isinstance(batch_id, str) else None,
        dependents=dependents,
    )


def batch_summary(document: Mapping[str, Any]) -> dict[str, Any] | None:
    """The summary of the batch ``document`` completes (its then job's ``ctx.batch``): the
    batch id, size, count per outcome and ``missing``; None for any other document."""
    batch = document.get(BATCH)
    if not isinstance(batch, Mapping) or batch.get(STATE) != CLOSED:
        return None
    return dict(batch)


def ended_of(document: Mapping[str, Any], outcome: str) -> Ended:
    batch_id = document.get(BATCH_ID)
    return Ended(
        document.get("_id"),
        outcome,
        batch_id if isinstance(batch_id, str) else None,
        DEPENDENTS in document,
    )


def waits_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """The ``waiting_on`` of a document: only the entries whose key is the key of their id
    (anything else was written by hand, and ``doctor`` reports it)."""
    value = document.get(WAITING_ON)
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if _keyed(k, v)}


def _keyed(key: Any, doc_id: Any) -> bool:
    return key is not None and key == key_or_none(doc_id)


def key_or_none(doc_id: Any) -> str | None:
    """:func:`dep_key`, or None for a value that is no document id (BSON cannot encode it)."""
    try:
        return dep_key(doc_id)
    except (InvalidDocument, TypeError, ValueError, OverflowError):
        return None


def waits_from(after: Any) -> dict[str, Any]:
    """``waiting_on`` rebuilt from a stored ``after`` (any shape: what is no id is skipped)."""
    pairs = ((key_or_none(d), d) for d in (after if isinstance(after, list) else []))
    return {k: d for k, d in pairs if k is not None}


def release(key: str) -> Document:
    return {"$unset": {f"{WAITING_ON}.{key}": ""}, "$inc": {WAITING: -1}}


def waiting_for(key: str) -> Document:
    return {"status": Status.WAITING.value, f"{WAITING_ON}.{key}": {"$exists": True}}


def cascade_update(source: Ended, now: datetime) -> Document:
    return {
        "$set": {
            "status": Status.CANCELLED.value,
            "cancelled_at": now,
            "cancel_reason": (f"dependency {safe_text(source.doc_id, 200)} ended {source.outcome}"),
            CANCELLED_BY: dep_key(source.doc_id),
        },
        "$unset": {WAITING: "", WAITING_ON: "", "available_at": ""},
    }


def settle(ended: Sequence[Ended], now: datetime) -> Flow[int]:
    """Settle documents that ended: release or cancel their dependents (transitively), count
    them in their batches, close the batches they completed. Returns how many waiting
    documents it changed (released ones are counted when promoted)."""
    changed = 0
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    seen: set[str] = set()  # cancelled here already: a cycle made by hand ends
    level = list(ended)
    while level:
        for e in level:
            if e.batch_id is not None:
                counts[e.batch_id][e.outcome] += 1
        sources = [e for e in level if e.dependents]
        level = []
        if not sources:
            break
        requests: list[UpdateOne | UpdateMany] = []
        for e in sources:
            where = waiting_for(dep_key(e.doc_id))
            if e.outcome != Status.PROCESSED.value:
                where[IF_FAILED] = RUN
            requests.append(UpdateMany(where, release(dep_key(e.doc_id))))
        requests.append(UpdateMany(READY, PROMOTE))
        changed += yield Bulk(requests)
        for e in sources:
            if e.outcome == Status.PROCESSED.value:
                continue
            victims = yield Find(waiting_for(dep_key(e.doc_id)), {BATCH_ID: 1, DEPENDENTS: 1})
            fresh = [v for v in victims if dep_key(v.get("_id")) not in seen]
            if not fresh:
                continue
            seen.update(dep_key(v.get("_id")) for v in fresh)
            ids = [v.get("_id") for v in fresh]
            where = {"_id": {"$in": ids}, "status": Status.WAITING.value}
            cancelled: int = yield Update(where, cascade_update(e, now), many=True)
            changed += cancelled
            if cancelled:
                yield cancelled_note(e, cancelled)
            level.extend(ended_of(v, Status.CANCELLED.value) for v in fresh)
    for batch_id, outcomes in counts.items():
        changed += yield from count(batch_id, outcomes, now)
    return changed


def whole(value: Any) -> int:
    """An int value as stored, else 0 (a bool is no count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def count(batch_id: str, outcomes: Mapping[str, int], now: datetime) -> Flow[int]:
    """Add one flush's outcomes to a batch's counters; close it when they reach its size."""
    inc = {f"{BATCH}.{o}": n for o, n in outcomes.items() if o in OUTCOMES}
    where = {f"{BATCH}.id": batch_id, "status": Status.WAITING.value}
    then = yield Bump(where, {"$inc": inc}, {BATCH: 1})
    if then is None:
        return 0
    batch = then.get(BATCH)
    if not isinstance(batch, Mapping) or batch.get(STATE) != SEALED:
        return 0
    if sum(whole(batch.get(o)) for o in OUTCOMES) < whole(batch.get("size")):
        return 0
    return (yield from close(then["_id"], batch, now))


def close(then_id: Any, batch: Mapping[str, Any], now: datetime) -> Flow[int]:
    """Make a sealed batch's then document pending if none of its members is unfinished,
    with the members' counts taken from the members themselves. Exactly once: the write is
    fenced on ``status: waiting``. Returns 1 when this call closed it."""
    batch_id, size = batch.get("id"), batch.get("size")
    if not isinstance(batch_id, str) or batch.get(STATE) != SEALED:
        return 0
    if not isinstance(size, int) or isinstance(size, bool):
        return 0  # written by hand: doctor reports it
    unfinished = yield Find({BATCH_ID: batch_id, "status": {"$in": OPEN}}, {"_id": 1}, limit=1)
    if unfinished:
        return 0
    rows = yield Aggregate(
        [{"$match": {BATCH_ID: batch_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    )
    by_status = {row.get("_id"): whole(row.get("n")) for row in rows}
    summary: Document = {"id": batch_id, "size": size, STATE: CLOSED}
    summary.update({o: by_status.get(o, 0) for o in OUTCOMES})
    summary["missing"] = max(0, size - sum(by_status.values()))  # deleted before it ended
    summary["ended_at"] = now
    where = {"_id": then_id, "status": Status.WAITING.value, f"{BATCH}.{STATE}": SEALED}
    closed: int = yield Update(where, {"$set": {"status": Status.PENDING.value, BATCH: summary}})
    if closed:
        yield closed_note(then_id, summary)
    return closed


def closed_note(then_id: Any, summary: Mapping[str, Any]) -> Note:
    """What the agent logs when a batch closes (``queue.batch_closed``)."""
    return Note("batch_closed", {"then_id": then_id, **summary})


def cancelled_note(source: Ended, count: int) -> Note:
    """What the agent logs when a dependency's end cancels waiting documents."""
    return Note(
        "dependents_cancelled",
        {"dependency": source.doc_id, "outcome": source.outcome, "count": count},
    )


def resolve(
    waiting: Iterable[Mapping[str, Any]], now: datetime, everywhere: bool = True
) -> Flow[int]:
    """Look again at waiting documents' dependencies: release the processed ones, cancel
    (or release, for ``run``) on a failed or cancelled one, promote what is ready. After
    an enqueue (a dependency may have ended while it ran; ``everywhere=False``: promote
    only those documents, and send nothing when there are none) and in the sweep (an agent
    may have died between an outcome and its settling: promote every ready document)."""
    docs = [d for d in waiting if waits_of(d)]
    if not docs and not everywhere:
        return 0
    deps: dict[str, Any] = {}
    for doc in docs:
        deps.update(waits_of(doc))
    found = (yield Find({"_id": {"$in": list(deps.values())}}, {"status": 1})) if deps else []
    status_of = {dep_key(f.get("_id")): f.get("status") for f in found}
    requests: list[UpdateOne | UpdateMany] = []
    for doc in docs:
        run_anyway = doc.get(IF_FAILED) == RUN
        for key in waits_of(doc):
            status = status_of.get(key)
            if status == Status.PROCESSED.value or (run_anyway and status in OUTCOMES):
                where = {"_id": doc.get("_id"), **waiting_for(key)}
                requests.append(UpdateOne(where, release(key)))
    ready = READY if everywhere else {"_id": {"$in": [d.get("_id") for d in docs]}, **READY}
    requests.append(UpdateMany(ready, PROMOTE))
    changed: int = yield Bulk(requests)
    failed = [
        Ended(f.get("_id"), str(f.get("status")), None, True)
        for f in found
        if f.get("status") in (Status.FAILED.value, Status.CANCELLED.value)
    ]
    if failed:
        changed += yield from settle(failed, now)
    return changed


def repair(offset: int, now: datetime) -> Flow[tuple[int, int]]:
    """The sweep's share: resolve up to ``REPAIR_MAX`` waiting documents from ``offset``
    (the next sweep goes on from there, wrapping round) and close the open batches whose
    members have all ended. Returns (documents changed, next offset)."""
    where = {"status": Status.WAITING.value, WAITING: {"$gt": 0}}
    waiting = yield Find(where, {WAITING_ON: 1, IF_FAILED: 1}, REPAIR_MAX, offset, "_id")
    changed = yield from resolve(waiting, now)
    nxt = offset + len(waiting) if len(waiting) == REPAIR_MAX else 0
    batches = yield Find(
        {"status": Status.WAITING.value, f"{BATCH}.{STATE}": SEALED}, {BATCH: 1}, REPAIR_MAX
    )
    for then in batches:
        batch = then.get(BATCH)
        if isinstance(batch, Mapping):
            changed += yield from close(then.get("_id"), batch, now)
    return changed, nxt


def revive(dependencies: Sequence[Any], now: datetime) -> Flow[int]:
    """Bring back, waiting again, the documents cancelled because one of ``dependencies``
    (requeued from the dead letter) failed, and theirs, transitively. Each waits for every
    document of its ``after`` that is not processed. Returns how many came back."""
    revived: list[Document] = []
    seen: set[str] = set()
    level = list(dependencies)
    while level:
        keys = [dep_key(d) for d in level]
        found = yield Find(
            {"status": Status.CANCELLED.value, CANCELLED_BY: {"$in": keys}},
            {AFTER: 1, IF_FAILED: 1, CANCELLED_BY: 1},
        )
        fresh = [v for v in found if dep_key(v.get("_id")) not in seen]
        if not fresh:
            break
        seen.update(dep_key(v.get("_id")) for v in fresh)
        requests: list[UpdateOne | UpdateMany] = []
        for victim in fresh:
            waits = waits_from(victim.get(AFTER))
            where = {"_id": victim.get("_id"), "status": Status.CANCELLED.value}
            where[CANCELLED_BY] = victim.get(CANCELLED_BY)
            update = {
                "$set": {"status": Status.WAITING.value, WAITING_ON: waits, WAITING: len(waits)},
                "$unset": {"cancelled_at": "", "cancel_reason": "", CANCELLED_BY: ""},
            }
            requests.append(UpdateOne(where, update))
            revived.append({**victim, WAITING_ON: waits})
        yield Bulk(requests)
        level = [v.get("_id") for v in fresh]
    if revived:
        yield from resolve(revived, now)
    return len(revived)
