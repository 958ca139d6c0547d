"""One contract for every WorkStore: the in-memory store and MongoDB over the wire.

The MongoDB runs are against nx-27017 by default, or a real replica set when
``TEST_MONGODB_URI`` is set; known nx-27017 deviations are marked in tests/deviations.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pulling_agent.queue.indexes import INDEXES
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.queue.model import ClaimKind, Completion, ErrorInfo, OutcomeKind, WorkStore
from pulling_agent.queue.mongo import MongoWorkStore
from tests.deviations import (
    BOOL_SORTS_AS_NUMBER,
    DATES_TO_THE_SECOND,
    INDEX_NAMES_NOT_KEPT,
    SET_DATETIME_IS_STRING,
    nx_deviation,
)

ALL = (ClaimKind.EXPIRED, ClaimKind.DUE_RETRY, ClaimKind.FRESH)


class Harness:
    """A store plus the two things the contract needs beyond the protocol."""

    def __init__(self, store: WorkStore, kind: str, collection: Any = None) -> None:
        self.store = store
        self.kind = kind
        self._collection = collection

    async def insert(self, docs: list[dict[str, Any]]) -> list[Any]:
        if isinstance(self.store, MemoryWorkStore):
            return self.store.insert(docs)
        result = await self._collection.insert_many([dict(d) for d in docs])
        return list(result.inserted_ids)

    async def get(self, doc_id: Any) -> dict[str, Any]:
        if isinstance(self.store, MemoryWorkStore):
            return self.store.get(doc_id)
        doc: dict[str, Any] = await self._collection.find_one({"_id": doc_id})
        return doc


@pytest.fixture(params=["memory", "mongo"])
async def h(request: pytest.FixtureRequest, mongo_uri: str, db_name: str) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield Harness(MemoryWorkStore(), "memory")
        return
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    collection = client[db_name]["work"]
    yield Harness(MongoWorkStore(collection), "mongo", collection)
    await client.drop_database(db_name)
    await client.close()


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def pending(n: int) -> list[dict[str, Any]]:
    return [{"status": "pending", "n": i, "user": {"keep": i}} for i in range(n)]


def err(at: datetime, attempt: int = 1) -> ErrorInfo:
    return ErrorInfo("ValueError", "bad", "Traceback ...", at, attempt)


@nx_deviation(DATES_TO_THE_SECOND)
async def test_a_document_due_a_fraction_of_a_second_later_is_not_claimed(h: Harness) -> None:
    t = now()
    await h.insert([{"status": "pending", "n": 0, "available_at": t + timedelta(seconds=0.6)}])
    assert await h.store.claim("a1", 5, 30, t + timedelta(seconds=0.1), ALL) == []
    [claim] = await h.store.claim("a1", 5, 30, t + timedelta(seconds=0.6), ALL)
    assert claim.kind is ClaimKind.DUE_RETRY


async def test_claim_leases_fresh_documents_up_to_the_limit(h: Harness) -> None:
    await h.insert(pending(7))
    t = now()
    claims = await h.store.claim("a1", 5, 30, t, ALL)
    assert len(claims) == 5
    assert len({c.token for c in claims}) == 1, "one token per batch"
    doc = await h.get(claims[0].doc_id)
    assert doc["status"] == "processing" and doc["attempts"] == 1
    assert doc["lease"]["owner"] == "a1" and doc["lease"]["token"] == claims[0].token
    assert doc["lease"]["expires_at"] == t + timedelta(seconds=30)
    assert doc["user"] == {"keep": doc["n"]}, "user fields stay untouched"
    assert claims[0].document["attempts"] == 1
    rest = await h.store.claim("a2", 5, 30, t, ALL)
    assert len(rest) == 2
    assert await h.store.claim("a3", 5, 30, t, ALL) == []


async def test_concurrent_claimers_never_get_the_same_document(h: Harness) -> None:
    await h.insert(pending(60))
    t = now()
    batches = await asyncio.gather(*(h.store.claim(f"a{i}", 7, 30, t, ALL) for i in range(12)))
    ids = [c.doc_id for batch in batches for c in batch]
    # under contention a claimer may come back short; whatever is left is still claimable
    ids += [c.doc_id for c in await h.store.claim("late", 60, 30, t, ALL)]
    assert len(ids) == len(set(ids)), "a document was claimed twice"
    assert len(ids) == 60


async def test_completion_is_fenced_on_the_lease_token(h: Harness) -> None:
    [doc_id] = await h.insert(pending(1))
    t = now()
    [claim] = await h.store.claim("a1", 1, 30, t, ALL)
    wrong = Completion(doc_id, "not-the-token", OutcomeKind.PROCESSED)
    assert await h.store.complete([wrong], t) == 0
    assert (await h.get(doc_id))["status"] == "processing"
    right = Completion(doc_id, claim.token, OutcomeKind.PROCESSED)
    assert await h.store.complete([right], t) == 1
    doc = await h.get(doc_id)
    assert doc["status"] == "processed" and "lease" not in doc
    assert await h.store.complete([right], t) == 0, "a second completion changes nothing"


@nx_deviation(SET_DATETIME_IS_STRING)
async def test_processed_at_is_a_datetime(h: Harness) -> None:
    [doc_id] = await h.insert(pending(1))
    t = now()
    [claim] = await h.store.claim("a1", 1, 30, t, ALL)
    await h.store.complete([Completion(doc_id, claim.token, OutcomeKind.PROCESSED)], t)
    assert (await h.get(doc_id))["processed_at"] == t


async def test_expired_lease_is_claimable_again_and_old_owner_is_fenced_out(h: Harness) -> None:
    [doc_id] = await h.insert(pending(1))
    t = now()
    [first] = await h.store.claim("dead", 1, 10, t, ALL)
    assert await h.store.claim("a2", 1, 10, t + timedelta(seconds=5), ALL) == []
    [second] = await h.store.claim("a2", 1, 10, t + timedelta(seconds=11), ALL)
    assert second.doc_id == doc_id and second.attempts == 2 and second.kind is ClaimKind.EXPIRED
    late = Completion(doc_id, first.token, OutcomeKind.PROCESSED)
    assert await h.store.complete([late], t + timedelta(seconds=12)) == 0
    assert (await h.get(doc_id))["lease"]["owner"] == "a2"


async def test_renewal_keeps_a_lease_alive(h: Harness) -> None:
    await h.insert(pending(3))
    t = now()
    claims = await h.store.claim("a1", 3, 10, t, ALL)
    assert await h.store.renew("a1", claims[0].token, t + timedelta(seconds=60)) == 3
    assert await h.store.claim("a2", 3, 10, t + timedelta(seconds=30), ALL) == []
    assert await h.store.renew("a1", "unknown-token", t + timedelta(seconds=60)) == 0


async def _fail_once_retry_in_60s(h: Harness) -> tuple[Any, datetime]:
    [doc_id] = await h.insert(pending(1))
    t = now()
    [claim] = await h.store.claim("a1", 1, 30, t, ALL)
    e = err(t)
    retry = Completion(
        doc_id, claim.token, OutcomeKind.RETRY, e, (e.as_document(),), t + timedelta(seconds=60)
    )
    assert await h.store.complete([retry], t) == 1
    return doc_id, t


async def test_retry_returns_to_pending_with_error_history(h: Harness) -> None:
    doc_id, t = await _fail_once_retry_in_60s(h)
    doc = await h.get(doc_id)
    assert doc["status"] == "pending" and "lease" not in doc
    assert doc["error"]["type"] == "ValueError" and len(doc["errors"]) == 1
    [again] = await h.store.claim("a1", 1, 30, t + timedelta(seconds=61), ALL)
    assert again.kind is ClaimKind.DUE_RETRY and again.attempts == 2


async def test_retry_is_not_claimable_before_available_at(h: Harness) -> None:
    _, t = await _fail_once_retry_in_60s(h)
    assert await h.store.claim("a1", 1, 30, t + timedelta(seconds=30), ALL) == []


async def test_dead_letter_lists_and_requeues(h: Harness) -> None:
    ids = await h.insert(pending(3))
    t = now()
    claims = await h.store.claim("a1", 3, 30, t, ALL)
    e = err(t, 5)
    failed = [
        Completion(c.doc_id, c.token, OutcomeKind.FAILED, e, (e.as_document(),)) for c in claims
    ]
    assert await h.store.complete(failed, t) == 3
    listed = await h.store.list_failed(10)
    assert sorted(d["n"] for d in listed) == [0, 1, 2]
    assert all(d["error"]["message"] == "bad" for d in listed)
    assert await h.store.requeue([ids[0]]) == 1
    doc = await h.get(ids[0])
    assert doc["status"] == "pending" and doc["attempts"] == 0 and "failed_at" not in doc
    assert doc["errors"][0]["message"] == "bad", "history survives a requeue"
    assert await h.store.requeue(None) == 2
    assert await h.store.list_failed(10) == []
    assert len(await h.store.claim("a1", 10, 30, t, ALL)) == 3


@nx_deviation(SET_DATETIME_IS_STRING)
async def test_failed_at_is_a_datetime(h: Harness) -> None:
    [doc_id] = await h.insert(pending(1))
    t = now()
    [c] = await h.store.claim("a1", 1, 30, t, ALL)
    e = err(t)
    await h.store.complete([Completion(doc_id, c.token, OutcomeKind.FAILED, e, ())], t)
    assert (await h.get(doc_id))["failed_at"] == t


async def test_release_returns_documents_at_once(h: Harness) -> None:
    await h.insert(pending(4))
    t = now()
    claims = await h.store.claim("a1", 4, 300, t, ALL)
    token = claims[0].token
    assert await h.store.release(token, [c.doc_id for c in claims[:2]], undo_attempt=True) == 2
    assert await h.store.release(token, [c.doc_id for c in claims[2:]], undo_attempt=False) == 2
    assert await h.store.release(token, [claims[0].doc_id], undo_attempt=True) == 0
    again = await h.store.claim("a2", 4, 300, t, ALL)
    assert sorted(c.attempts for c in again) == [1, 1, 2, 2]


async def test_counts_by_status(h: Harness) -> None:
    await h.insert(pending(5))
    await h.store.claim("a1", 2, 30, now(), ALL)
    assert await h.store.counts() == {"pending": 3, "processing": 2}


async def test_ensure_indexes_is_idempotent(h: Harness) -> None:
    await h.store.ensure_indexes()
    await h.store.ensure_indexes()


@nx_deviation(INDEX_NAMES_NOT_KEPT)
async def test_every_queue_index_is_created(h: Harness) -> None:
    assert await h.store.ensure_indexes() == []
    if h.kind == "mongo":
        names = set(await h._collection.index_information())
        assert set(INDEXES) <= names


async def test_fresh_work_comes_highest_priority_first_any_type_of_value(h: Harness) -> None:
    """MongoDB's sort order, which the in-memory store mirrors: by BSON type first (no
    priority below every number, a string above them), then by value; ties oldest first."""
    values: list[Any] = [1, None, 2.5, "x", -3, 2.5, None, 10**12]
    await h.insert([{"status": "pending", "n": n, "priority": v} for n, v in enumerate(values)])
    await h.insert([{"status": "pending", "n": 99}])  # no priority field at all
    claims = await h.store.claim("a1", 10, 30, now(), [ClaimKind.FRESH])
    assert [c.document["n"] for c in claims] == [3, 7, 2, 5, 0, 4, 1, 6, 99]


@nx_deviation(BOOL_SORTS_AS_NUMBER)
async def test_a_bool_priority_sorts_above_every_number_and_string(h: Harness) -> None:
    await h.insert(
        [{"status": "pending", "n": n, "priority": v} for n, v in enumerate(["x", 5, True])]
    )
    claims = await h.store.claim("a1", 10, 30, now(), [ClaimKind.FRESH])
    assert [c.document["n"] for c in claims] == [2, 0, 1]
