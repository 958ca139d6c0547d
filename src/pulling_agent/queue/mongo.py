"""The MongoDB :class:`WorkStore`: lease-based batch claiming with PyMongo's async API.

Claim = ``find`` candidates (one plain filter per :class:`ClaimKind`), then one
conditional write that repeats the filter (``update_many`` with ``{_id: {$in: ids}}`` for
fresh work, a ``bulk_write`` of per-``_id`` updates for the few recovery claims), so each
document is re-checked atomically by the server and only one claimer can win it; a re-read
by token happens only when some candidates were lost to another agent. Two round trips per
batch without contention. Completions go out as one unordered ``bulk_write``, every write fenced on
``(_id, lease.token, status: processing)``.

Datetimes are written only inside whole sub-documents or as top-level ``$set`` values;
the lease is always replaced whole, never by a dotted path.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bson.errors import InvalidDocument
from pymongo import ASCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, WriteError
from pymongo.results import BulkWriteResult, UpdateResult

from pulling_agent.encoding import parse_time
from pulling_agent.queue import cancelling, indexes, results, retention, settling
from pulling_agent.queue.documents import (
    NON_DATE_TYPES,
    attempts_of,
    check_attempts,
    check_available_at,
    rejection_reason,
    shows_outcome,
)
from pulling_agent.queue.fairness import Walk, fair_index
from pulling_agent.queue.indexes import FRESH_ORDER
from pulling_agent.queue.limits import Limiter, clear_strays, conflicting, is_duplicate, with_slots
from pulling_agent.queue.model import (
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
from pulling_agent.queue.ops import Note, run_async
from pulling_agent.queue.queries import (
    FINAL,
    claim_filter,
    completion_update,
    dead_letter_update,
    leased_filter,
    outcome_filter,
)
from pulling_agent.queue.results import OUTCOME_FIELDS
from pulling_agent.queue.spread import Spread, window
from pulling_agent.queue.workflow import (
    BATCH_ID,
    dep_key,
    repair,
    revive,
    settle,
)
from pulling_agent.text import one_line

SPARE_MAX_AGE = 1.0  # seconds a spare candidate list stays usable
# the kinds whose documents hold no slot yet: those of a full scope only wait (the others
# are interrupted documents, which take their own slots back)
WAITING_KINDS = (ClaimKind.FRESH, ClaimKind.DUE_RETRY)
CONTENTION_ROUNDS = 3  # look again at once when other agents won some of the candidates

# What the BSON encoder raises for a value it cannot write (an int beyond 64 bits, a key
# it refuses...): the document's fault, not the store's.
ENCODING_ERRORS = (InvalidDocument, OverflowError, ValueError, TypeError)
REJECTED = (WriteError, *ENCODING_ERRORS)
POISON_MAX = 1_000
SWEEP_MAX = 500  # documents fixed per type per sweep (the next sweep takes the rest)


def _ignore(rejection: Rejection) -> None:
    return None


class MongoWorkStore:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_rejected: Callable[[Rejection], None] = _ignore,
        scope: Document | None = None,
    ) -> None:
        self.collection = collection
        self.scope = dict(scope or {})  # added to every claim filter (routing by type)
        self.on_rejected = on_rejected
        self.on_workflow: Callable[[str, Mapping[str, Any]], None] = ignore_event
        self._spare: list[Document] = []
        self._spare_at = 0.0
        self._poison: set[Any] = set()  # malformed, and even the dead-letter write failed
        self.lost_race = False  # the last claim gave up with candidates lost to other agents
        self.spread = Spread()  # where fresh candidates are read (the fleet sets a share)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # the agent's: MongoDB's
        self._repair_offset = 0  # where the sweep goes on looking at waiting documents
        self.limiter = Limiter()  # fleet-wide limits (queue.limits); none unless set
        self.walk = Walk()  # fair claiming between key values (queue.fairness); off unless set

    async def ensure_indexes(self) -> list[str]:
        fair = fair_index(str(self.walk.key_field)) if self.walk.active else {}
        extra = {**fair, **self.limiter.indexes()}
        return await indexes.ensure(self.collection, self.limiter.active, extra)

    def _noted(self, note: Note) -> None:
        self.on_workflow(note.event, note.fields)

    async def ensure_retention(self, wanted: Mapping[str, float | None]) -> list[tuple[str, str]]:
        return [(n.level, n.message) for n in await retention.ensure(self.collection, wanted)]

    async def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        now: datetime,
        kinds: Sequence[ClaimKind],
    ) -> list[Claim]:
        lease = new_lease(owner, lease_seconds, now)
        claims: list[Claim] = []
        self.lost_race = False
        for kind in kinds:
            for _ in range(CONTENTION_ROUNDS):
                remaining = limit - len(claims)
                if remaining <= 0:
                    return claims
                won, found = await self._claim_kind(kind, remaining, lease, now)
                claims.extend(won)
                lost = len(won) < found  # to another agent, or waiting for a limit's slot
                self.lost_race = self.lost_race or lost  # work is there: look again soon
                if not lost:  # no need to look again now
                    break
        return claims

    async def _claim_kind(
        self, kind: ClaimKind, limit: int, lease: Document, now: datetime
    ) -> tuple[list[Claim], int]:
        """Claim up to ``limit`` documents of one kind. Returns the claims and how many
        candidates were found (more than claimed when another agent won some)."""
        match = {**claim_filter(kind, now), **self.scope}
        waits = kind in WAITING_KINDS and self.limiter.active  # full scopes' documents wait
        narrow = self.limiter.leave_out(match, kind.value) if waits else match
        if narrow is None:  # every type this agent runs is full: nothing to read
            return [], 0
        found, from_spare = await self._candidates(kind, narrow, limit)
        if not found and narrow is not match:
            self.limiter.nothing_behind(kind.value)
        match = narrow
        candidates = await self._screen(found, match, now)
        slots: dict[Any, dict[str, str]] = {}
        blocked = 0  # candidates waiting for a slot: work is there, behind full scopes
        if candidates and self.limiter.active:
            slots, blocked = await self.limiter.plan(self.collection, candidates)
            candidates = [doc for doc in candidates if dep_key(doc["_id"]) in slots]
            slots = {key: taken for key, taken in slots.items() if taken}
        if not candidates:
            if from_spare and found:
                self._spare = []
            return [], blocked
        ids = [doc["_id"] for doc in candidates]
        update = {
            "$set": {"status": Status.PROCESSING.value, "lease": lease},
            "$inc": {"attempts": 1},
        }
        modified, refused = await self._claim_write(kind, ids, match, update, slots)
        taken = [(i, exc) for i, exc in refused if is_duplicate(exc)]  # another holds a slot
        self.limiter.refused(conflicting(slots.get(dep_key(i), {}), exc) for i, exc in taken)
        lost = [i for i, _ in taken]
        refused = [(i, exc) for i, exc in refused if not is_duplicate(exc)]
        if refused:
            by_id = {doc["_id"]: doc for doc in candidates}
            for doc_id, exc in refused:
                await self._reject(doc_id, match, rejection_reason(exc, by_id.get(doc_id)), now)
        if not refused and modified == len(ids) - len(lost):
            won = [doc for doc in candidates if doc["_id"] not in lost] if lost else candidates
            for doc in won:
                doc.update(
                    status=Status.PROCESSING.value,
                    lease=dict(lease),
                    attempts=attempts_of(doc) + 1,
                    **slots.get(dep_key(doc["_id"]), {}),
                )
        elif modified == 0 and not refused:
            won = []
        else:  # another agent took some, or some were refused: read back what we hold
            reread = self.collection.find({"_id": {"$in": ids}, "lease.token": lease["token"]})
            won = await reread.to_list(length=len(ids))
        if from_spare and len(won) < len(ids):
            self._spare = []  # stale: other agents got there first
        claims = [Claim(d["_id"], lease["token"], attempts_of(d), d, kind) for d in won]
        return claims, len(candidates) - len(refused) + blocked

    async def _claim_write(
        self,
        kind: ClaimKind,
        ids: list[Any],
        match: Document,
        update: Document,
        slots: Mapping[Any, Mapping[str, str]],
    ) -> tuple[int, list[tuple[Any, BaseException]]]:
        """The conditional claim write. Returns how many documents it modified and the
        documents the server refused (a WriteError about one document must not fail the
        others). Per-document writes happen only after a batch write reported an error,
        or when documents take limit slots (each its own: queue.limits)."""
        if slots:
            return await self._each(
                [
                    (
                        i,
                        UpdateOne(
                            {"_id": i, **match}, with_slots(update, slots.get(dep_key(i), {}))
                        ),
                    )
                    for i in ids
                ]
            )
        if kind is ClaimKind.FRESH:
            try:
                result = await self.collection.update_many({"_id": {"$in": ids}, **match}, update)
            except WriteError:
                pass  # some documents may have been claimed before it stopped: go one by one
            else:
                return result.modified_count, []
        # Recovery claims are few: one conditional update per document, still one round
        # trip. (nx-27017 cannot combine $in with a date comparison; MongoDB can, and both
        # forms are equally atomic per document.)
        return await self._each([(i, UpdateOne({"_id": i, **match}, update)) for i in ids])

    async def _each(
        self, requests: Sequence[tuple[Any, UpdateOne]]
    ) -> tuple[int, list[tuple[Any, BaseException]]]:
        """One unordered bulk write of ``(doc_id, request)`` pairs, one per document;
        returns how many were modified and the refused ones by id."""
        ids = [doc_id for doc_id, _ in requests]
        try:
            result = await self.collection.bulk_write([r for _, r in requests], ordered=False)
        except BulkWriteError as exc:
            refused: list[tuple[Any, BaseException]] = [
                (ids[e["index"]], WriteError(e.get("errmsg", ""), e.get("code"), e))
                for e in exc.details.get("writeErrors", [])
            ]
            return int(exc.details.get("nModified", 0)), refused
        except ENCODING_ERRORS as exc:
            if len(ids) == 1:
                return 0, [(ids[0], exc)]
            modified, refused = 0, []  # find the ones the encoder refuses
            for pair in requests:
                n, bad = await self._each([pair])
                modified += n
                refused.extend(bad)
            return modified, refused
        return result.modified_count, []

    async def _screen(
        self, candidates: list[Document], match: Document, now: datetime
    ) -> list[Document]:
        """Dead-letter the candidates whose ``attempts`` a claim cannot increment, before
        the claim write: one bad document never fails the batch."""
        good = []
        for doc in candidates:
            problem = check_attempts(doc)
            if problem is None:
                good.append(doc)
            else:
                await self._reject(doc["_id"], match, problem, now)
        return good

    async def _reject(
        self, doc_id: Any, fence: Document, problem: Problem, now: datetime, stage: str = "claim"
    ) -> bool:
        """Dead-letter one malformed document, fenced on the state it was seen in."""
        try:
            result = await self.collection.update_one(
                {"_id": doc_id, **fence}, dead_letter_update(problem, now)
            )
        except REJECTED:
            if len(self._poison) < POISON_MAX:
                self._poison.add(doc_id)
            self.on_rejected(Rejection(doc_id, problem, stage, dead_lettered=False))
            return False
        if result.modified_count:
            self.on_rejected(Rejection(doc_id, problem, stage, dead_lettered=True))
        return bool(result.modified_count)

    async def _candidates(
        self, kind: ClaimKind, match: Document, limit: int
    ) -> tuple[list[Document], bool]:
        """Up to ``limit`` candidates, and whether they came from the spare list.

        A fresh-work find reads ``WINDOW_BATCHES`` batches, from where this agent's share of
        the fleet puts it (:mod:`.spread`); the next claim uses the spare ones without a find
        while they are younger than ``SPARE_MAX_AGE``. The conditional update re-checks
        every candidate, so a stale one is merely lost, never double-claimed.
        """
        if kind is ClaimKind.FRESH and self.walk.active:
            skip = self.spread.offset(window(limit))
            return await self.walk.candidates(self._find, match, limit, FRESH_ORDER, skip), False
        if kind is ClaimKind.FRESH and self._spare:
            if time.monotonic() - self._spare_at < SPARE_MAX_AGE:
                taken, self._spare = self._spare[:limit], self._spare[limit:]
                return taken, True
            self._spare = []
        if kind is not ClaimKind.FRESH:
            return await self._find(match, limit), False
        read = window(limit)
        skip = self.spread.offset(read)
        found = await self._find(match, read, skip, FRESH_ORDER)
        if skip and len(found) < limit:  # the agent's slice is past the end: the head
            found = await self._find(match, read, 0, FRESH_ORDER)
        self._spare, self._spare_at = found[limit:], time.monotonic()
        return found[:limit], False

    async def _find(
        self,
        match: Document,
        read: int,
        skip: int = 0,
        order: list[tuple[str, int]] | None = None,
    ) -> list[Document]:
        query = {**match, "_id": {"$nin": list(self._poison)}} if self._poison else match
        cursor = self.collection.find(query, limit=read, batch_size=read, skip=skip, sort=order)
        return await cursor.to_list(length=read)

    async def renew(
        self,
        owner: str,
        token: str,
        expires_at: datetime,
        progress: Mapping[Any, Any] | None = None,
    ) -> int:
        fence = {"lease.token": token, "status": Status.PROCESSING.value}
        lease = {"lease": {"owner": owner, "token": token, "expires_at": expires_at}}
        update = {"$set": lease}
        # each document once: with its progress, or in the one update of the others
        requests: list[UpdateOne | UpdateMany] = [
            UpdateOne({"_id": doc_id, **fence}, {"$set": {**lease, "progress": value}})
            for doc_id, value in (progress or {}).items()
        ]
        try:
            if not requests:
                result: UpdateResult | BulkWriteResult = await self.collection.update_many(
                    fence, update
                )
            else:
                others = {**fence, "_id": {"$nin": list(progress or {})}}
                requests.append(UpdateMany(others, update))
                result = await self.collection.bulk_write(requests, ordered=False)
        except (WriteError, BulkWriteError):
            return await self._renew_each(fence, update)
        return result.modified_count

    async def _renew_each(self, fence: Document, update: Document) -> int:
        """A renewal the server refused for one document: renew the others one by one,
        dead-letter the refused one (its handler's outcome will find the lease gone)."""
        held = self.collection.find(fence, {"_id": 1})
        ids = [doc["_id"] async for doc in held]
        modified, refused = await self._each(
            [(i, UpdateOne({"_id": i, **fence}, update)) for i in ids]
        )
        now = self.clock()
        for doc_id, exc in refused:
            await self._reject(doc_id, fence, rejection_reason(exc, None), now, stage="renew")
        return modified

    async def complete(self, completions: Sequence[Completion], now: datetime) -> int:
        if not completions:
            return 0
        self.limiter.freed(c.doc_id for c in completions)
        applied = await self._write_outcomes(completions, now)
        all_applied = applied == len(completions)
        if not all_applied:  # lost leases, or dependents arrived meanwhile
            late = await settling.late_dependents(self.collection, completions)
            if late:
                applied += await self.complete(list(late.values()), now)
                completions = [c for c in completions if dep_key(c.doc_id) not in late]
        flagged = [c for c in completions if c.kind in FINAL and (c.batch_id or c.dependents)]
        if flagged:
            ended = await settling.ended(self.collection, flagged, all_applied)
            await run_async(settle(ended, now), self.collection, self._noted)
        return applied

    async def _write_outcomes(self, completions: Sequence[Completion], now: datetime) -> int:
        requests: list[UpdateOne | UpdateMany] = []
        covers: list[list[Completion]] = []  # the completions each request writes
        processed: dict[tuple[str, bool], list[Completion]] = defaultdict(list)
        for c in completions:
            if c.kind is OutcomeKind.PROCESSED and not c.result.fields:  # one write for many
                processed[c.token, c.dependents].append(c)
            else:
                requests.append(UpdateOne(outcome_filter(c), completion_update(c, now)))
                covers.append([c])
        for (token, dependents), group in processed.items():
            done = Completion(None, token, OutcomeKind.PROCESSED, dependents=dependents)
            ids = [c.doc_id for c in group]
            requests.append(UpdateMany(outcome_filter(done, ids), completion_update(done, now)))
            covers.append(group)
        try:
            result = await self.collection.bulk_write(requests, ordered=False)
        except BulkWriteError as exc:
            failed = {e["index"] for e in exc.details.get("writeErrors", [])}
            applied = int(exc.details.get("nModified", 0))
            for index in sorted(failed):
                applied += await self._complete_each(covers[index], now)
            return applied
        except ENCODING_ERRORS:
            return await self._complete_each(list(completions), now)
        return result.modified_count

    async def _complete_each(self, completions: Sequence[Completion], now: datetime) -> int:
        """The slow path after a refused batch: each outcome alone; one the server or the
        encoder refuses dead-letters its document instead (still fenced on the lease). A
        result the server refuses is replaced by its ``result_error`` first: the document
        was processed, and stays so."""
        applied = 0
        for c in completions:
            request = UpdateOne(outcome_filter(c), completion_update(c, now))
            modified, refused = await self._each([(c.doc_id, request)])
            if refused and c.result.stored:
                c = replace(c, result=results.refused(refused[0][1]))
                request = UpdateOne(outcome_filter(c), completion_update(c, now))
                modified, refused = await self._each([(c.doc_id, request)])
            applied += modified
            lease_fence = {"lease.token": c.token, "status": Status.PROCESSING.value}
            for doc_id, exc in refused:
                problem = rejection_reason(exc, None)
                if await self._reject(doc_id, lease_fence, problem, now, stage="complete"):
                    applied += 1
        return applied

    async def written(self, completions: Sequence[Completion], now: datetime) -> int:
        wanted = {c.doc_id: c for c in completions}
        cursor = self.collection.find(
            {"_id": {"$in": list(wanted)}}, {"status": 1, "processed_at": 1, "error": 1}
        )
        count = 0
        async for doc in cursor:
            c = wanted[doc["_id"]]
            error_at = c.error.at if c.error else None
            count += shows_outcome(doc, c.kind.value, error_at, now)
        return count

    async def release(self, token: str, doc_ids: Sequence[Any], undo_attempt: bool) -> int:
        if not doc_ids:
            return 0
        self.limiter.freed(doc_ids)
        update: Document = {"$set": {"status": Status.PENDING.value}, "$unset": dict(UNLEASE)}
        fence = leased_filter(list(doc_ids), token)
        if undo_attempt:
            try:
                result = await self.collection.update_many(
                    fence, {**update, "$inc": {"attempts": -1}}
                )
            except WriteError:
                pass  # an attempts value $inc refuses: hand back without undoing the attempt
            else:
                return result.modified_count
        result = await self.collection.update_many(fence, update)
        return result.modified_count

    async def ping(self) -> None:
        await self.collection.database.command("ping")

    def connection_problem(self) -> str | None:
        topology = self.collection.database.client.topology_description
        for server in topology.server_descriptions().values():
            if server.error is not None:  # without pymongo's list of configured timeouts
                return one_line(str(server.error).split(" (configured timeouts", 1)[0], 200)
        return None

    async def sweep(self, now: datetime) -> int:
        changed = 0
        for value_type in NON_DATE_TYPES:
            pending = {"status": Status.PENDING.value, "available_at": {"$type": value_type}}
            async for doc in self.collection.find(pending, {"available_at": 1}, limit=SWEEP_MAX):
                changed += await self._sweep_pending(doc, now)
            processing = {
                "status": Status.PROCESSING.value,
                "lease.expires_at": {"$type": value_type},
            }
            async for doc in self.collection.find(processing, {"lease": 1}, limit=SWEEP_MAX):
                # a lease no agent wrote counts as expired: back to pending, attempt kept
                result = await self.collection.update_one(
                    {
                        "_id": doc["_id"],
                        "status": Status.PROCESSING.value,
                        "lease.expires_at": doc["lease"]["expires_at"],
                    },
                    {"$set": {"status": Status.PENDING.value}, "$unset": dict(UNLEASE)},
                )
                changed += result.modified_count
        if self.limiter.active:
            changed += await clear_strays(self.collection)
        repaired, self._repair_offset = await run_async(
            repair(self._repair_offset, now), self.collection, self._noted
        )
        return changed + repaired

    async def _sweep_pending(self, doc: Document, now: datetime) -> int:
        value = doc.get("available_at")
        fence = {"status": Status.PENDING.value, "available_at": value}
        problem = check_available_at(doc)
        if problem is not None:
            return int(await self._reject(doc["_id"], fence, problem, now, stage="sweep"))
        due = parse_time(value)
        if due is None or due > now:
            return 0  # an ISO-8601 string not yet due: cleared when it is
        result = await self.collection.update_one(
            {"_id": doc["_id"], **fence}, {"$unset": {"available_at": ""}}
        )
        return result.modified_count

    async def cancel(self, doc_ids: Sequence[Any], by: str, now: datetime) -> CancelResult:
        return await run_async(cancelling.cancel(doc_ids, by, now), self.collection, self._noted)

    async def cancel_requested(self, token: str) -> list[Any]:
        cursor = self.collection.find(
            {"lease.token": token, "cancel_requested": {"$exists": True}}, {"_id": 1}
        )
        return [doc["_id"] async for doc in cursor]

    async def list_failed(self, limit: int) -> list[Document]:
        cursor = self.collection.find(
            {"status": Status.FAILED.value}, sort=[("failed_at", ASCENDING)], limit=limit
        )
        return await cursor.to_list(length=limit)

    async def requeue(self, doc_ids: Sequence[Any] | None) -> int:
        match: Document = {"status": Status.FAILED.value}
        if doc_ids is not None:
            match["_id"] = {"$in": list(doc_ids)}
        result = await self.collection.update_many(
            match,
            {
                "$set": {"status": Status.PENDING.value, "attempts": 0},
                "$unset": {"available_at": "", "failed_at": "", **UNLEASE, "error": ""},
            },
        )
        return result.modified_count

    async def revive_dependents(self, doc_ids: Sequence[Any], now: datetime) -> int:
        return await run_async(revive(doc_ids, now), self.collection, self._noted)

    async def counts(self) -> dict[str, int]:
        pipeline: list[Document] = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        cursor = await self.collection.aggregate(pipeline)
        return {str(row["_id"]): int(row["n"]) async for row in cursor}

    def batch_members(self, batch_id: str, page: int) -> AsyncIterator[Document]:
        # one cursor, page documents per getMore (index pulling_agent_batch_members)
        return self.collection.find({BATCH_ID: batch_id}, OUTCOME_FIELDS, batch_size=page)

    async def close(self) -> None:
        return None
