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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure
from pymongo.results import BulkWriteResult, UpdateResult

from pulling_agent.queue.model import (
    Claim,
    ClaimKind,
    Completion,
    Document,
    OutcomeKind,
    Status,
    new_lease,
)

SPARE_FACTOR = 2  # fresh candidates read per find, in batches: the spare feeds the next claim
SPARE_MAX_AGE = 1.0  # seconds a spare candidate list stays usable
CONTENTION_ROUNDS = 3  # look again at once when other agents won some of the candidates

INDEXES: dict[str, list[tuple[str, int]]] = {
    # fresh and due-retry claims. Equal keys come back in the index's record order, which on
    # WiredTiger follows insertion: roughly oldest first, without an in-memory sort.
    "pulling_agent_claim": [("status", ASCENDING), ("available_at", ASCENDING)],
    # expired-lease recovery; renewals find a lease's documents among the few processing
    # ones through its status prefix (completions and re-reads go by _id), so the lease
    # token needs no index of its own - one less index to maintain on every write
    "pulling_agent_expiry": [("status", ASCENDING), ("lease.expires_at", ASCENDING)],
}


def claim_filter(kind: ClaimKind, now: datetime) -> Document:
    """The filter that makes a document claimable as ``kind`` at ``now``."""
    if kind is ClaimKind.FRESH:
        return {"status": Status.PENDING.value, "available_at": None}
    if kind is ClaimKind.DUE_RETRY:
        return {"status": Status.PENDING.value, "available_at": {"$lte": now}}
    return {"status": Status.PROCESSING.value, "lease.expires_at": {"$lt": now}}


def leased_filter(doc_id: Any, token: str) -> Document:
    """The fence every completion and release carries: the document is still processing
    under this lease. ``doc_id`` may be a list, for a batch of documents of one lease."""
    match = {"$in": list(doc_id)} if isinstance(doc_id, list) else doc_id
    return {"_id": match, "lease.token": token, "status": Status.PROCESSING.value}


def completion_update(c: Completion, now: datetime) -> Document:
    if c.kind is OutcomeKind.PROCESSED:
        return {
            "$set": {"status": Status.PROCESSED.value, "processed_at": now},
            "$unset": {"lease": "", "available_at": "", "error": ""},
        }
    assert c.error is not None
    fields: Document = {"error": c.error.as_document(), "errors": list(c.errors)}
    if c.kind is OutcomeKind.RETRY:
        fields.update(status=Status.PENDING.value, available_at=c.available_at)
        return {"$set": fields, "$unset": {"lease": ""}}
    fields.update(status=Status.FAILED.value, failed_at=now)
    return {"$set": fields, "$unset": {"lease": "", "available_at": ""}}


class MongoWorkStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._spare: list[Document] = []
        self._spare_at = 0.0

    async def ensure_indexes(self) -> list[str]:
        warnings = []
        for name, keys in INDEXES.items():
            try:
                await self.collection.create_index(keys, name=name)
            except OperationFailure as exc:
                warnings.append(f"index {name} not created ({exc.code}): {exc.details}")
        return warnings

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
        for kind in kinds:
            for _ in range(CONTENTION_ROUNDS):
                remaining = limit - len(claims)
                if remaining <= 0:
                    return claims
                won, found = await self._claim_kind(kind, remaining, lease, now)
                claims.extend(won)
                if len(won) == found:  # nothing lost to another agent: no need to look again
                    break
        return claims

    async def _claim_kind(
        self, kind: ClaimKind, limit: int, lease: Document, now: datetime
    ) -> tuple[list[Claim], int]:
        """Claim up to ``limit`` documents of one kind. Returns the claims and how many
        candidates were found (more than claimed when another agent won some)."""
        match = claim_filter(kind, now)
        candidates, from_spare = await self._candidates(kind, match, limit)
        if not candidates:
            return [], 0
        ids = [doc["_id"] for doc in candidates]
        update = {
            "$set": {"status": Status.PROCESSING.value, "lease": lease},
            "$inc": {"attempts": 1},
        }
        result: UpdateResult | BulkWriteResult
        if kind is ClaimKind.FRESH:
            result = await self.collection.update_many({"_id": {"$in": ids}, **match}, update)
        else:
            # Recovery claims are few: one conditional update per document, still one round
            # trip. (nx-27017 cannot combine $in with a date comparison; MongoDB can, and
            # both forms are equally atomic per document.)
            result = await self.collection.bulk_write(
                [UpdateOne({"_id": doc_id, **match}, update) for doc_id in ids], ordered=False
            )
        if result.modified_count == len(ids):
            for doc in candidates:
                doc.update(
                    status=Status.PROCESSING.value,
                    lease=dict(lease),
                    attempts=int(doc.get("attempts") or 0) + 1,
                )
            won = candidates
        elif result.modified_count == 0:
            won = []
            if from_spare:
                self._spare = []  # stale: other agents got there first
        else:  # another agent took some: read back exactly what this token holds
            reread = self.collection.find({"_id": {"$in": ids}, "lease.token": lease["token"]})
            won = await reread.to_list(length=len(ids))
        if from_spare and len(won) < len(ids):
            self._spare = []
        claims = [Claim(d["_id"], lease["token"], int(d["attempts"]), d, kind) for d in won]
        return claims, len(candidates)

    async def _candidates(
        self, kind: ClaimKind, match: Document, limit: int
    ) -> tuple[list[Document], bool]:
        """Up to ``limit`` candidates, and whether they came from the spare list.

        A fresh-work find reads ``SPARE_FACTOR`` batches; the next claim uses the spare ones
        without a find while they are younger than ``SPARE_MAX_AGE``. The conditional
        update re-checks every candidate, so a stale one is merely lost, never double-claimed.
        """
        if kind is ClaimKind.FRESH and self._spare:
            if time.monotonic() - self._spare_at < SPARE_MAX_AGE:
                taken, self._spare = self._spare[:limit], self._spare[limit:]
                return taken, True
            self._spare = []
        read = limit * SPARE_FACTOR if kind is ClaimKind.FRESH else limit
        cursor = self.collection.find(match, limit=read, batch_size=read)
        found = await cursor.to_list(length=read)
        if kind is ClaimKind.FRESH:
            self._spare, self._spare_at = found[limit:], time.monotonic()
        return found[:limit], False

    async def renew(self, owner: str, token: str, expires_at: datetime) -> int:
        result = await self.collection.update_many(
            {"lease.token": token, "status": Status.PROCESSING.value},
            {"$set": {"lease": {"owner": owner, "token": token, "expires_at": expires_at}}},
        )
        return result.modified_count

    async def complete(self, completions: Sequence[Completion], now: datetime) -> int:
        if not completions:
            return 0
        requests: list[UpdateOne | UpdateMany] = []
        processed: dict[str, list[Any]] = defaultdict(list)
        for c in completions:
            if c.kind is OutcomeKind.PROCESSED:
                processed[c.token].append(c.doc_id)
            else:
                requests.append(
                    UpdateOne(leased_filter(c.doc_id, c.token), completion_update(c, now))
                )
        done = Completion(None, "", OutcomeKind.PROCESSED)
        for token, ids in processed.items():
            requests.append(UpdateMany(leased_filter(ids, token), completion_update(done, now)))
        result = await self.collection.bulk_write(requests, ordered=False)
        return result.modified_count

    async def release(self, token: str, doc_ids: Sequence[Any], undo_attempt: bool) -> int:
        if not doc_ids:
            return 0
        update: Document = {"$set": {"status": Status.PENDING.value}, "$unset": {"lease": ""}}
        if undo_attempt:
            update["$inc"] = {"attempts": -1}
        result = await self.collection.update_many(leased_filter(list(doc_ids), token), update)
        return result.modified_count

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
                "$unset": {"available_at": "", "failed_at": "", "lease": "", "error": ""},
            },
        )
        return result.modified_count

    async def counts(self) -> dict[str, int]:
        pipeline: list[Document] = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        cursor = await self.collection.aggregate(pipeline)
        return {str(row["_id"]): int(row["n"]) async for row in cursor}

    async def close(self) -> None:
        return None
