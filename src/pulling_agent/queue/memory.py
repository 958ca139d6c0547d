"""An in-memory :class:`WorkStore` with the same semantics as the MongoDB one.

For unit tests of the runtime and for measuring the agent's own CPU per document. Every
method runs without awaiting in the middle, so it is atomic within one event loop.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pulling_agent.encoding import parse_time
from pulling_agent.queue.documents import (
    attempts_of,
    check_attempts,
    check_available_at,
    priority_rank,
    shows_outcome,
)
from pulling_agent.queue.fairness import Walk
from pulling_agent.queue.limits import Limiter, assign
from pulling_agent.queue.model import (
    SLOT_FIELDS,
    UNLEASE,
    CancelResult,
    Claim,
    ClaimKind,
    Completion,
    Document,
    OutcomeKind,
    Problem,
    Rejection,
    Status,
    ignore_event,
    new_lease,
)
from pulling_agent.queue.queries import FINAL
from pulling_agent.queue.results import OUTCOME_FIELDS
from pulling_agent.queue.spread import Spread, window
from pulling_agent.queue.workflow import (
    AFTER,
    BATCH,
    BATCH_ID,
    CANCELLED_BY,
    CLOSED,
    DEPENDENTS,
    IF_FAILED,
    OUTCOMES,
    RUN,
    SEALED,
    STATE,
    WAITING,
    WAITING_ON,
    Ended,
    cancelled_note,
    cascade_update,
    closed_note,
    dep_key,
    ended_of,
    waits_from,
    waits_of,
    whole,
)


def _ignore(rejection: Rejection) -> None:
    return None


def _unlease(doc: Document) -> None:
    """What ``$unset: UNLEASE`` does: the lease and the limit slots it held go."""
    for name in UNLEASE:
        doc.pop(name, None)


class MemoryWorkStore:
    def __init__(
        self,
        documents: Iterable[Document] = (),
        on_rejected: Callable[[Rejection], None] = _ignore,
        scope: Document | None = None,
    ) -> None:
        self.on_rejected = on_rejected
        self.on_workflow: Callable[[str, Mapping[str, Any]], None] = ignore_event
        self.scope = dict(scope or {})  # {field: {"$in": [...]}} only, as the agent writes it
        self._docs: dict[Any, Document] = {}
        self._ids = itertools.count(1)
        self.calls: list[str] = []
        self.lost_race = False  # one event loop: never
        self.spread = Spread()  # where fresh documents are read (the fleet sets a share)
        self.limiter = Limiter()  # fleet-wide limits (queue.limits)
        self.walk = Walk()  # fair claiming between key values (queue.fairness)
        self.insert(documents)

    def insert(self, documents: Iterable[Document]) -> list[Any]:
        ids = []
        for doc in documents:
            stored = copy.deepcopy(doc)
            while "_id" not in stored:  # a fresh id (never one a document already has)
                candidate = next(self._ids)
                if candidate not in self._docs:
                    stored["_id"] = candidate
            self._docs[stored["_id"]] = stored
            ids.append(stored["_id"])
        return ids

    def get(self, doc_id: Any) -> Document:
        return copy.deepcopy(self._docs[doc_id])

    def all(self) -> list[Document]:
        return [copy.deepcopy(d) for d in self._docs.values()]

    async def ensure_indexes(self) -> list[str]:
        self.calls.append("ensure_indexes")
        return []

    async def ensure_retention(self, wanted: Mapping[str, float | None]) -> list[tuple[str, str]]:
        self.calls.append("ensure_retention")
        return []  # nothing is ever deleted here

    def _eligible(self, doc: Document, kind: ClaimKind, now: datetime) -> bool:
        """The MongoDB claim filters' meaning, types included (a date compares only with
        a date)."""
        for field, condition in self.scope.items():
            value = doc.get(field)
            values = value if isinstance(value, list) else [value]  # $in matches elements
            if not any(v in condition["$in"] for v in values):
                return False
        status = doc.get("status")
        if kind is ClaimKind.FRESH:
            return status == Status.PENDING and doc.get("available_at") is None
        if kind is ClaimKind.DUE_RETRY:
            available = doc.get("available_at")
            return status == Status.PENDING and isinstance(available, datetime) and available <= now
        if status != Status.PROCESSING:
            return False
        lease = doc.get("lease")
        expires = lease.get("expires_at") if isinstance(lease, dict) else None
        if kind is ClaimKind.ORPHANED:
            return expires is None
        return isinstance(expires, datetime) and expires < now

    def _dead_letter(self, doc: Document, problem: Problem, now: datetime, stage: str) -> None:
        _unlease(doc)
        doc.update(status=Status.FAILED.value, failed_at=now, error=problem.as_error(now))
        self.on_rejected(Rejection(doc["_id"], problem, stage, dead_lettered=True))

    async def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        now: datetime,
        kinds: Sequence[ClaimKind],
    ) -> list[Claim]:
        self.calls.append("claim")
        lease = new_lease(owner, lease_seconds, now)
        claims: list[Claim] = []
        held = self._held() if self.limiter.active else {}
        for kind in kinds:
            docs: Iterable[Document] = self._docs.values()
            if kind is ClaimKind.FRESH:
                everything = self.limiter.active or self.walk.active
                wanted = len(self._docs) if everything else limit - len(claims)
                docs = self._fresh(wanted, now)  # limited: past the full scopes
            first = len(claims)
            for doc in docs:
                if len(claims) >= limit:
                    break
                if self._eligible(doc, kind, now):
                    problem = check_attempts(doc)
                    if problem is not None:
                        self._dead_letter(doc, problem, now, "claim")
                        continue
                    if self.limiter.active:  # what the unique slot indexes enforce
                        plan = assign([doc], self.limiter.limits, held)
                        if not plan.take:
                            continue  # a scope is full: it waits, pending
                        for field, slot in plan.take[0][1].items():
                            held[slot] = doc["_id"]
                            doc[field] = slot
                    doc["status"] = Status.PROCESSING.value
                    doc["lease"] = dict(lease)
                    doc["attempts"] = attempts_of(doc) + 1
                    claims.append(
                        Claim(doc["_id"], lease["token"], doc["attempts"], copy.deepcopy(doc), kind)
                    )
            if kind is ClaimKind.FRESH and self.walk.active:  # the walk moves past them
                self.walk.take([c.document for c in claims[first:]], limit)
        return claims

    def _held(self) -> dict[str, Any]:
        return {
            slot: doc["_id"]
            for doc in self._docs.values()
            for slot in (doc.get(name) for name in SLOT_FIELDS)
            if isinstance(slot, str)
        }

    def _fresh(self, limit: int, now: datetime) -> list[Document]:
        """Fresh documents in claim order (priority, then insertion), from where this
        store's share of the fleet puts it (as the MongoDB store's find with ``skip``)."""
        read = window(limit)
        skip = self.spread.offset(read)
        docs = self._docs.values()
        eligible = (d for d in docs if self._eligible(d, ClaimKind.FRESH, now))
        if any("priority" in d for d in docs):
            # equivalent to a stable sort, descending: equal ones oldest first
            ranked = heapq.nlargest(skip + read, eligible, key=priority_rank)
        else:  # insertion order: read no further than needed
            ranked = list(itertools.islice(eligible, skip + read))
        found = ranked[skip : skip + read]
        if skip and len(found) < limit:  # the slice is past the end: the head
            found = ranked[:read]
        return self.walk.mirror(found) if self.walk.active else found

    def _leased(self, doc_id: Any, token: str) -> Document | None:
        doc = self._docs.get(doc_id)
        if doc is None or doc.get("status") != Status.PROCESSING:
            return None
        return doc if (doc.get("lease") or {}).get("token") == token else None

    async def renew(
        self,
        owner: str,
        token: str,
        expires_at: datetime,
        progress: Mapping[Any, Any] | None = None,
    ) -> int:
        self.calls.append("renew")
        renewed = 0
        for doc in self._docs.values():
            lease = doc.get("lease") or {}
            if doc.get("status") == Status.PROCESSING and lease.get("token") == token:
                doc["lease"] = {"owner": owner, "token": token, "expires_at": expires_at}
                if progress and doc["_id"] in progress:
                    doc["progress"] = copy.deepcopy(progress[doc["_id"]])
                renewed += 1
        return renewed

    async def complete(self, completions: Sequence[Completion], now: datetime) -> int:
        self.calls.append("complete")
        applied = 0
        ended = []
        for c in completions:
            doc = self._leased(c.doc_id, c.token)
            if doc is None:
                continue
            applied += 1
            if c.kind in FINAL and (BATCH_ID in doc or DEPENDENTS in doc):  # as it is now
                ended.append(ended_of(doc, FINAL[c.kind]))
            self._outcome(doc, c, now)
        self._settle(ended, now)
        return applied

    def _outcome(self, doc: Document, c: Completion, now: datetime) -> None:
        _unlease(doc)
        doc.pop("cancel_requested", None)
        if c.kind is OutcomeKind.PROCESSED:
            doc.update(status=Status.PROCESSED.value, processed_at=now, **c.result.fields)
            doc.pop("available_at", None)
            doc.pop("error", None)
            return
        if c.kind is OutcomeKind.CANCELLED:
            doc.update(status=Status.CANCELLED.value, cancelled_at=now, cancel_reason=c.reason)
            doc.pop("available_at", None)
            return
        if c.error is not None:
            doc.update(error=c.error.as_document(), errors=[dict(e) for e in c.errors])
        if c.kind is OutcomeKind.RESCHEDULE:
            doc.update(status=Status.PENDING.value, available_at=c.available_at)
            doc["attempts"] = attempts_of(doc) - 1
        elif c.kind is OutcomeKind.RETRY:
            doc.update(status=Status.PENDING.value, available_at=c.available_at)
        else:
            doc.update(status=Status.FAILED.value, failed_at=now)
            doc.pop("available_at", None)

    # ------------------------------------------------------------ workflows (queue.workflow)

    def _settle(self, ended: list[Ended], now: datetime) -> None:
        """What ``queue.workflow.settle`` does with MongoDB, on the dictionaries."""
        if not ended:
            return
        counts: dict[str, dict[str, int]] = {}
        level = list(ended)
        while level:
            after: list[Ended] = []
            for e in level:
                if e.batch_id is not None:
                    batch = counts.setdefault(e.batch_id, {})
                    batch[e.outcome] = batch.get(e.outcome, 0) + 1
                if e.dependents:
                    after.extend(self._dependents_of(e, now))
            level = after
        self._promote()
        for batch_id, outcomes in counts.items():
            then = next((d for d in self._waiting() if _batch_id(d) == batch_id), None)
            if then is None:
                continue
            batch = then[BATCH]
            for outcome, n in outcomes.items():
                batch[outcome] = batch.get(outcome, 0) + n
            if sum(whole(batch.get(o)) for o in OUTCOMES) >= whole(batch.get("size")):
                self._close(then, now)

    def _waiting(self) -> list[Document]:
        return [d for d in self._docs.values() if d.get("status") == Status.WAITING]

    def _dependents_of(self, source: Ended, now: datetime) -> list[Ended]:
        """Release (or cancel) the waiting dependents of ``source``; the cancelled ones."""
        key = dep_key(source.doc_id)
        cancelled = []
        for doc in self._waiting():
            if key not in waits_of(doc):
                continue
            if source.outcome == Status.PROCESSED or doc.get(IF_FAILED) == RUN:
                del doc[WAITING_ON][key]
                doc[WAITING] = whole(doc.get(WAITING)) - 1
                continue
            update = cascade_update(source, now)
            doc.update(update["$set"])
            for name in update["$unset"]:
                doc.pop(name, None)
            cancelled.append(ended_of(doc, Status.CANCELLED.value))
        if cancelled:
            note = cancelled_note(source, len(cancelled))
            self.on_workflow(note.event, note.fields)
        return cancelled

    def _promote(self) -> None:
        for doc in self._waiting():
            if doc.get(WAITING) == 0:
                doc["status"] = Status.PENDING.value
                doc.pop(WAITING, None)
                doc.pop(WAITING_ON, None)

    def _close(self, then: Document, now: datetime) -> None:
        batch = then.get(BATCH)
        if not isinstance(batch, dict) or batch.get(STATE) != SEALED:
            return
        if not isinstance(batch.get("size"), int) or isinstance(batch.get("size"), bool):
            return  # written by hand: doctor reports it
        members = [d for d in self._docs.values() if d.get(BATCH_ID) == batch.get("id")]
        if any(d.get("status") not in OUTCOMES for d in members):
            return
        size = whole(batch.get("size"))
        summary: Document = {"id": batch["id"], "size": size, STATE: CLOSED}
        summary.update({o: sum(d.get("status") == o for d in members) for o in OUTCOMES})
        summary.update(missing=max(0, size - len(members)), ended_at=now)
        then.update(status=Status.PENDING.value, batch=summary)
        note = closed_note(then["_id"], summary)
        self.on_workflow(note.event, note.fields)

    def _repair(self, now: datetime) -> None:
        """The sweep's share, as ``queue.workflow.repair``."""
        for doc in self._waiting():
            for key, dep_id in list(waits_of(doc).items()):
                dep = self._docs.get(dep_id) if isinstance(dep_id, Hashable) else None
                status = None if dep is None else dep.get("status")
                if status == Status.PROCESSED or (status in OUTCOMES and doc.get(IF_FAILED) == RUN):
                    del doc[WAITING_ON][key]
                    doc[WAITING] = whole(doc.get(WAITING)) - 1
                elif dep is not None and status in OUTCOMES and doc.get("status") == Status.WAITING:
                    self._settle([Ended(dep_id, str(status), None, True)], now)
        self._promote()
        for then in self._waiting():
            if isinstance(then.get(BATCH), dict):
                self._close(then, now)

    async def written(self, completions: Sequence[Completion], now: datetime) -> int:
        self.calls.append("written")
        count = 0
        for c in completions:
            doc = self._docs.get(c.doc_id)
            error_at = c.error.at if c.error else None
            count += doc is not None and shows_outcome(doc, c.kind.value, error_at, now)
        return count

    async def release(self, token: str, doc_ids: Sequence[Any], undo_attempt: bool) -> int:
        self.calls.append("release")
        released = 0
        for doc_id in doc_ids:
            doc = self._leased(doc_id, token)
            if doc is None:
                continue
            _unlease(doc)
            doc["status"] = Status.PENDING.value
            if undo_attempt:
                doc["attempts"] = attempts_of(doc) - 1
            released += 1
        return released

    async def ping(self) -> None:
        self.calls.append("ping")

    def connection_problem(self) -> str | None:
        return None

    async def sweep(self, now: datetime) -> int:
        self.calls.append("sweep")
        changed = 0
        for doc in self._docs.values():
            status = doc.get("status")
            if status != Status.PROCESSING and self.limiter.active:  # limits.clear_strays
                stray = [n for n in SLOT_FIELDS if isinstance(doc.get(n), str)]
                for name in stray:
                    del doc[name]
                changed += len(stray)
            if status == Status.PENDING:
                value = doc.get("available_at")
                if value is None or isinstance(value, datetime):
                    continue
                problem = check_available_at(doc)
                if problem is not None:
                    self._dead_letter(doc, problem, now, "sweep")
                    changed += 1
                    continue
                due = parse_time(value)
                if due is not None and due <= now:
                    doc.pop("available_at")
                    changed += 1
            elif status == Status.PROCESSING:
                lease = doc.get("lease")
                expires = lease.get("expires_at") if isinstance(lease, dict) else None
                if expires is not None and not isinstance(expires, datetime):
                    _unlease(doc)
                    doc["status"] = Status.PENDING.value
                    changed += 1
        self._repair(now)
        return changed

    async def cancel(self, doc_ids: Sequence[Any], by: str, now: datetime) -> CancelResult:
        result = CancelResult()
        for doc_id in doc_ids:
            doc = self._docs.get(doc_id)
            status = None if doc is None else doc.get("status")
            if doc is not None and status in (Status.PENDING, Status.WAITING):
                for name in ("available_at", *UNLEASE, WAITING, WAITING_ON):
                    doc.pop(name, None)
                doc.update(
                    status=Status.CANCELLED.value,
                    cancelled_at=now,
                    cancel_reason=f"cancelled by {by}",
                )
                result.cancelled.append(doc_id)
                self._settle([ended_of(doc, Status.CANCELLED.value)], now)
            elif doc is not None and status == Status.PROCESSING:
                doc["cancel_requested"] = {"by": by, "at": now}
                result.requested.append(doc_id)
            else:
                result.not_found.append(doc_id)
        return result

    async def cancel_requested(self, token: str) -> list[Any]:
        self.calls.append("cancel_requested")
        return [
            doc["_id"]
            for doc in self._docs.values()
            if "cancel_requested" in doc and (doc.get("lease") or {}).get("token") == token
        ]

    async def list_failed(self, limit: int) -> list[Document]:
        failed = [d for d in self._docs.values() if d.get("status") == Status.FAILED]
        failed.sort(key=lambda d: d["failed_at"])
        return [copy.deepcopy(d) for d in failed[:limit]]

    async def requeue(self, doc_ids: Sequence[Any] | None) -> int:
        wanted = None if doc_ids is None else set(doc_ids)
        count = 0
        for doc in self._docs.values():
            if doc.get("status") != Status.FAILED or (
                wanted is not None and doc["_id"] not in wanted
            ):
                continue
            for key in ("available_at", "failed_at", *UNLEASE, "error"):
                doc.pop(key, None)
            doc.update(status=Status.PENDING.value, attempts=0)
            count += 1
        return count

    async def revive_dependents(self, doc_ids: Sequence[Any], now: datetime) -> int:
        keys = {dep_key(i) for i in doc_ids}
        revived = 0
        while keys:
            found = [
                d
                for d in self._docs.values()
                if d.get("status") == Status.CANCELLED and d.get(CANCELLED_BY) in keys
            ]
            for doc in found:
                waits = waits_from(doc.get(AFTER))
                for name in ("cancelled_at", "cancel_reason", CANCELLED_BY):
                    doc.pop(name, None)
                doc.update({"status": Status.WAITING.value, WAITING_ON: waits, WAITING: len(waits)})
            revived += len(found)
            keys = {dep_key(d["_id"]) for d in found}
        self._repair(now)
        return revived

    async def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for doc in self._docs.values():
            status = str(doc.get("status"))
            result[status] = result.get(status, 0) + 1
        return result

    async def batch_members(self, batch_id: str, page: int) -> AsyncIterator[Document]:
        members = [d["_id"] for d in self._docs.values() if d.get(BATCH_ID) == batch_id]
        for doc_id in members:  # as MongoDB's cursor: each as it is when read
            doc = self._docs.get(doc_id)
            if doc is not None:
                yield {
                    "_id": doc_id,
                    **{f: copy.deepcopy(doc[f]) for f in OUTCOME_FIELDS if f in doc},
                }

    async def close(self) -> None:
        return None


def _batch_id(doc: Document) -> Any:
    batch = doc.get(BATCH)
    return batch.get("id") if isinstance(batch, dict) else None
