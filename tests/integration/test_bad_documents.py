"""Documents the agent did not write, against every store: one bad document never blocks
the others, is dead-lettered with a clear error, and nothing is stuck for ever silently."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import BulkWriteError, WriteError

from pulling_agent.queue import documents
from pulling_agent.queue.model import ClaimKind, Completion, ErrorInfo, OutcomeKind, Rejection
from pulling_agent.queue.mongo import MongoWorkStore
from tests.deviations import (
    DATE_LIKE_STRING_EQUALITY,
    NAN_NOT_STORED,
    NO_TYPE_BRACKETING,
    nx_deviation,
)
from tests.integration.conftest import Recorder
from tests.integration.test_store_contract import Harness, h

__all__ = ["h"]

ALL = (ClaimKind.EXPIRED, ClaimKind.ORPHANED, ClaimKind.DUE_RETRY, ClaimKind.FRESH)
BAD_ATTEMPTS: list[Any] = [
    "3",
    "abc",
    True,
    2**63 - 1,
    1e19,
    -1,
    2.5,
    pytest.param(math.nan, marks=nx_deviation(NAN_NOT_STORED)),
    pytest.param(math.inf, marks=nx_deviation(NAN_NOT_STORED)),
    [1],
    {"n": 1},
    "x" * 100_000,
]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rejections(harness: Harness) -> list[Rejection]:
    seen: list[Rejection] = []
    harness.store.on_rejected = seen.append
    return seen


@pytest.mark.parametrize("bad", BAD_ATTEMPTS, ids=lambda v: repr(v)[:20])
async def test_a_bad_attempts_value_is_dead_lettered_and_the_batch_goes_on(
    h: Harness, bad: Any
) -> None:
    seen = rejections(h)
    ids = await h.insert(
        [
            {"status": "pending", "n": 0},
            {"status": "pending", "n": 1, "attempts": bad},
            {"status": "pending", "n": 2, "attempts": 2.0},
        ]
    )
    claims = await h.store.claim("a", 10, 30, now(), ALL)
    assert sorted(c.doc_id for c in claims) == [ids[0], ids[2]]
    assert {c.doc_id: c.attempts for c in claims} == {ids[0]: 1, ids[2]: 3}
    doc = await h.get(ids[1])
    assert doc["status"] == "failed"
    assert doc["error"]["type"] == "MalformedDocument"
    assert doc["error"]["field"] == "attempts"
    assert doc["error"]["value_type"] == documents.type_name(bad)
    assert "lease" not in doc
    assert [(r.doc_id, r.stage, r.dead_lettered) for r in seen] == [(ids[1], "claim", True)]
    # the dead letter keeps it: requeue resets attempts, and then it is claimable
    assert await h.store.requeue([ids[1]]) == 1
    [again] = await h.store.claim("a", 10, 30, now(), ALL)
    assert (again.doc_id, again.attempts) == (ids[1], 1)


async def test_a_document_the_server_refuses_is_isolated_by_per_document_writes(
    recorded: tuple[Any, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shape the screen does not know (simulated by switching the screen off): the batch
    claim fails on the server, and only then the store writes one by one, dead-letters the
    refused document and keeps the rest."""
    collection, recorder = recorded
    monkeypatch.setattr("pulling_agent.queue.mongo.check_attempts", lambda doc: None)
    await collection.insert_many(
        [{"_id": i, "status": "pending", "attempts": "3" if i == 2 else 0} for i in range(5)]
    )
    store = MongoWorkStore(collection)
    seen: list[Rejection] = []
    store.on_rejected = seen.append
    recorder.take()
    claims = await store.claim("a", 10, 30, now(), (ClaimKind.FRESH,))
    assert sorted(c.doc_id for c in claims) == [0, 1, 3, 4]
    commands = recorder.take()
    updates = [body["updates"] for name, body in commands if name == "update"]
    assert len(updates[0]) == 1 and updates[0][0]["multi"], "first the one batch write"
    assert len(updates[1]) == 5, "then one write per document, in one round trip"
    assert [r.doc_id for r in seen] == [2]
    assert seen[0].problem.field == "attempts", "the known check names the field"
    refused = await collection.find_one({"_id": 2})
    assert (refused["status"], refused["error"]["type"]) == ("failed", "MalformedDocument")


async def test_no_per_document_writes_without_an_error(
    recorded: tuple[Any, Recorder],
) -> None:
    collection, recorder = recorded
    await collection.insert_many([{"_id": i, "status": "pending"} for i in range(5)])
    store = MongoWorkStore(collection)
    recorder.take()
    assert len(await store.claim("a", 10, 30, now(), (ClaimKind.FRESH,))) == 5
    assert [name for name, _ in recorder.take()] == ["find", "update"]


async def test_an_outcome_the_encoder_refuses_dead_letters_only_its_document(
    recorded: tuple[Any, Recorder],
) -> None:
    """Before: an int beyond 64 bits in one outcome raised OverflowError in the flusher,
    the agent exited 1 and the other outcomes of that flush were lost."""
    collection, _ = recorded
    await collection.insert_many([{"_id": i, "status": "pending"} for i in range(3)])
    store = MongoWorkStore(collection)
    seen: list[Rejection] = []
    store.on_rejected = seen.append
    at = now()
    claims = await store.claim("a", 10, 30, at, (ClaimKind.FRESH,))
    token = claims[0].token
    huge = ErrorInfo("ValueError", "bad", "", at, 2**64)
    applied = await store.complete(
        [
            Completion(0, token, OutcomeKind.PROCESSED),
            Completion(1, token, OutcomeKind.RETRY, huge, (), available_at=at),
            Completion(2, token, OutcomeKind.PROCESSED),
        ],
        at,
    )
    assert applied == 3
    docs = {d["_id"]: d async for d in collection.find()}
    assert (docs[0]["status"], docs[2]["status"]) == ("processed", "processed")
    assert docs[1]["status"] == "failed"
    assert docs[1]["error"]["type"] == "MalformedDocument"
    assert [(r.doc_id, r.stage) for r in seen] == [(1, "complete")]


@pytest.mark.parametrize(
    "lease",
    [None, "x", {}, {"token": "t"}, {"expires_at": None}, 42],
    ids=["no-lease", "string", "empty", "no-expiry", "null-expiry", "number"],
)
async def test_processing_without_a_usable_lease_is_recovered_by_the_expiry_sweep(
    h: Harness, lease: Any
) -> None:
    doc: dict[str, Any] = {"status": "processing", "attempts": 1}
    if lease is not None:
        doc["lease"] = lease
    [doc_id] = await h.insert([doc])
    [claim] = await h.store.claim("a", 10, 30, now(), ALL)
    assert (claim.doc_id, claim.kind, claim.attempts) == (doc_id, ClaimKind.ORPHANED, 2)


async def test_a_lease_with_a_non_date_expiry_is_handed_back_by_the_sweep(h: Harness) -> None:
    [doc_id] = await h.insert(
        [{"status": "processing", "attempts": 1, "lease": {"token": "t", "expires_at": "never"}}]
    )
    assert await h.store.claim("a", 10, 30, now(), ALL) == []
    assert await h.store.sweep(now()) == 1
    [claim] = await h.store.claim("a", 10, 30, now(), ALL)
    assert (claim.doc_id, claim.attempts) == (doc_id, 2)


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        pytest.param(17, marks=nx_deviation(NO_TYPE_BRACKETING)),
        pytest.param(True, marks=nx_deviation(NO_TYPE_BRACKETING)),
        pytest.param({"at": 1}, marks=nx_deviation(NO_TYPE_BRACKETING)),
        pytest.param([], marks=nx_deviation(NO_TYPE_BRACKETING)),
        pytest.param("2026-13-45", marks=nx_deviation(DATE_LIKE_STRING_EQUALITY)),
    ],
)
async def test_a_non_date_available_at_is_dead_lettered_by_the_sweep(
    h: Harness, value: Any
) -> None:
    seen = rejections(h)
    [bad, good] = await h.insert(
        [{"status": "pending", "available_at": value}, {"status": "pending"}]
    )
    [claim] = await h.store.claim("a", 10, 30, now(), ALL)
    assert claim.doc_id == good
    assert await h.store.sweep(now()) == 1
    doc = await h.get(bad)
    assert (doc["status"], doc["error"]["type"]) == ("failed", "MalformedDocument")
    assert doc["error"]["field"] == "available_at"
    assert doc["available_at"] == value, "the bad value is kept for inspection"
    assert [(r.doc_id, r.stage) for r in seen] == [(bad, "sweep")]


async def test_an_iso_8601_string_available_at_is_honoured(h: Harness) -> None:
    """JSON producers write times as strings; a due one is cleared (claimable now), a
    future one is left until it falls due."""
    at = now()
    past = (at - timedelta(minutes=1)).isoformat()
    future = (at + timedelta(hours=1)).isoformat()
    [due, later] = await h.insert(
        [
            {"status": "pending", "available_at": past},
            {"status": "pending", "available_at": future},
        ]
    )
    await h.store.sweep(at)
    claims = await h.store.claim("a", 10, 30, at, ALL)
    assert [c.doc_id for c in claims] == [due]
    assert await h.store.complete([Completion(due, claims[0].token, OutcomeKind.PROCESSED)], at)
    assert (await h.get(later))["status"] == "pending"
    await h.store.sweep(at + timedelta(hours=2))
    claims = await h.store.claim("a", 10, 30, at + timedelta(hours=2), ALL)
    assert [c.doc_id for c in claims] == [later]


async def test_a_renewal_the_server_refuses_for_one_document_renews_the_others(
    recorded: tuple[Any, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch renewal fails (simulated: the server refuses the multi-update and the
    per-document update of document 1); the others are renewed, 1 is dead-lettered."""
    collection, recorder = recorded
    await collection.insert_many([{"_id": i, "status": "pending"} for i in range(3)])
    store = MongoWorkStore(collection)
    seen: list[Rejection] = []
    store.on_rejected = seen.append
    claims = await store.claim("a", 10, 30, now(), (ClaimKind.FRESH,))
    token = claims[0].token

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise WriteError("document too large after the update", 17419, {})

    real_bulk_write = collection.bulk_write

    async def refuse_one(requests: list[Any], **kwargs: Any) -> Any:
        ids = [r._filter["_id"] for r in requests]
        if 1 in ids:
            kept = [r for r, i in zip(requests, ids, strict=True) if i != 1]
            result = await real_bulk_write(kept, **kwargs) if kept else None
            index = ids.index(1)
            raise BulkWriteError(
                {
                    "writeErrors": [{"index": index, "code": 17419, "errmsg": "too large"}],
                    "nModified": result.modified_count if result else 0,
                }
            )
        return await real_bulk_write(requests, **kwargs)

    monkeypatch.setattr(collection, "update_many", refuse)
    monkeypatch.setattr(collection, "bulk_write", refuse_one)
    later = now() + timedelta(seconds=60)
    assert await store.renew("a", token, later) == 2
    monkeypatch.undo()
    docs = {d["_id"]: d async for d in collection.find()}
    assert docs[1]["status"] == "failed" and docs[1]["error"]["type"] == "MalformedDocument"
    assert [(r.doc_id, r.stage) for r in seen] == [(1, "renew")]
    for i in (0, 2):
        assert docs[i]["lease"]["expires_at"].replace(microsecond=0) == later
