"""The exact commands the MongoDB store sends, seen through PyMongo command monitoring.

These hold whatever server answers; they pin the filters that make claims atomic and
completions fenced, and the number of round trips per batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pulling_agent.queue.fairness import Walk, fair_index
from pulling_agent.queue.indexes import INDEXES
from pulling_agent.queue.limits import Limiter, Limits, typed_index
from pulling_agent.queue.model import (
    ClaimKind,
    Completion,
    ErrorInfo,
    OutcomeKind,
    claim_scope,
)
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.queue.results import kept
from tests.integration.conftest import Recorder

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE_END = T + timedelta(seconds=30)


@pytest.fixture
async def rec(mongo_uri: str, db_name: str) -> AsyncIterator[tuple[MongoWorkStore, Recorder]]:
    recorder = Recorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, tz_aware=True, event_listeners=[recorder]
    )
    collection = client[db_name]["work"]
    await collection.insert_many([{"status": "pending", "n": i} for i in range(100)])
    recorder.take()
    yield MongoWorkStore(collection), recorder
    await client.drop_database(db_name)
    await client.close()


async def test_fresh_claims_are_one_conditional_update_and_a_find_every_other_batch(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    claims = await store.claim("agent-1", 50, 30, T, [ClaimKind.FRESH])
    assert len(claims) == 50
    (find_name, find), (update_name, update) = recorder.take()
    assert (find_name, update_name) == ("find", "update")
    assert find["filter"] == {"status": "pending", "available_at": None}
    assert find["sort"] == {"priority": -1}, "highest priority first"
    # ...in the order of the index {status, available_at, priority: -1}: no in-memory sort
    assert INDEXES["pulling_agent_claim_priority"].keys == [
        ("status", 1),
        ("available_at", 1),
        ("priority", -1),
    ]
    assert find["limit"] == 100, "two batches of candidates: the spare feeds the next claim"
    assert find["batchSize"] >= 100, "all candidates in the first reply (no getMore)"
    [statement] = update["updates"]
    ids = [c.doc_id for c in claims]
    assert statement["q"] == {"_id": {"$in": ids}, "status": "pending", "available_at": None}
    lease = {"owner": "agent-1", "token": claims[0].token, "expires_at": LEASE_END}
    assert statement["u"] == {
        "$set": {"status": "processing", "lease": lease},
        "$inc": {"attempts": 1},
    }
    assert statement["multi"] is True

    second = await store.claim("agent-1", 50, 30, T, [ClaimKind.FRESH])
    [(name, update)] = recorder.take()
    assert name == "update", "the spare candidates need no find"
    assert update["updates"][0]["q"]["_id"] == {"$in": [c.doc_id for c in second]}
    assert not {c.doc_id for c in second} & set(ids)


async def test_stale_spare_candidates_are_lost_not_double_claimed(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, _ = rec
    other = MongoWorkStore(store.collection)
    mine = await store.claim("agent-1", 50, 30, T, [ClaimKind.FRESH])
    theirs = await other.claim("agent-2", 50, 30, T, [ClaimKind.FRESH])
    again = await store.claim("agent-1", 50, 30, T, [ClaimKind.FRESH])
    assert again == [], "agent-1's spare candidates were all taken by agent-2"
    ids = [c.doc_id for c in mine + theirs]
    assert len(ids) == len(set(ids)) == 100


async def test_recovery_claims_repeat_their_filter_per_document(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    claims = await store.claim("agent-1", 2, 30, T, [ClaimKind.FRESH])
    recorder.take()
    later = LEASE_END + timedelta(seconds=1)
    again = await store.claim("agent-2", 2, 30, later, [ClaimKind.EXPIRED, ClaimKind.DUE_RETRY])
    assert {c.doc_id for c in again} == {c.doc_id for c in claims}
    (find_name, find), (update_name, update) = recorder.take()
    expired = {"status": "processing", "lease.expires_at": {"$lt": later}}
    assert find["filter"] == expired
    assert [s["q"] for s in update["updates"]] == [{"_id": c.doc_id, **expired} for c in claims]
    assert all(not s.get("multi", False) for s in update["updates"])


async def test_empty_queue_costs_one_find_per_kind_and_no_write(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    await store.collection.delete_many({})
    recorder.take()
    kinds = [ClaimKind.EXPIRED, ClaimKind.DUE_RETRY, ClaimKind.FRESH]
    assert await store.claim("agent-1", 10, 30, T, kinds) == []
    sent = recorder.take()
    assert [name for name, _ in sent] == ["find", "find", "find"]
    assert sent[1][1]["filter"] == {"status": "pending", "available_at": {"$lte": T}}


async def test_completions_are_one_bulk_write_fenced_on_the_token(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    claims = await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH])
    recorder.take()
    token = claims[0].token
    error = ErrorInfo("ValueError", "bad", "tb", T, 1)
    retry_at = T + timedelta(seconds=9)
    await store.complete(
        [
            Completion(claims[0].doc_id, token, OutcomeKind.PROCESSED),
            Completion(claims[1].doc_id, token, OutcomeKind.PROCESSED),
            Completion(
                claims[2].doc_id, token, OutcomeKind.RETRY, error, (error.as_document(),), retry_at
            ),
        ],
        T,
    )
    [(name, command)] = recorder.take()
    assert name == "update" and command["ordered"] is False
    retry, done = command["updates"]
    assert retry["q"] == {"_id": claims[2].doc_id, "lease.token": token, "status": "processing"}
    assert retry["u"]["$set"]["status"] == "pending"
    assert retry["u"]["$set"]["available_at"] == retry_at
    # an outcome also clears a cancellation request that lost the race with it, and frees
    # the fleet-wide limit slots the document held (queue.limits), in the same write
    assert retry["u"]["$unset"] == {
        "lease": "",
        "limit_slot": "",
        "key_slot": "",
        "cancel_requested": "",
    }
    assert done["q"] == {
        "_id": {"$in": [claims[0].doc_id, claims[1].doc_id]},
        "lease.token": token,
        "status": "processing",
        # a final outcome also misses when dependents arrived after the claim, so that
        # the store writes it again as a dependency's (queue.workflow)
        "dependents": {"$exists": False},
    }
    assert done["u"] == {
        "$set": {"status": "processed", "processed_at": T},
        "$unset": {
            "lease": "",
            "limit_slot": "",
            "key_slot": "",
            "available_at": "",
            "error": "",
            "cancel_requested": "",
        },
    }
    assert done["multi"] is True


async def test_renewal_replaces_the_whole_lease_for_one_token(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    await store.renew("agent-1", "tok", LEASE_END)
    [(name, command)] = recorder.take()
    [statement] = command["updates"]
    assert statement["q"] == {"lease.token": "tok", "status": "processing"}
    # the lease is replaced whole, never by a dotted path (which would also break on nx-27017)
    assert statement["u"] == {
        "$set": {"lease": {"owner": "agent-1", "token": "tok", "expires_at": LEASE_END}}
    }


async def test_progress_rides_with_the_renewal_in_one_round_trip(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    await store.renew("agent-1", "tok", LEASE_END, {7: {"step": 2}})
    [(name, command)] = recorder.take()
    assert name == "update"
    with_progress, others = command["updates"]
    fence = {"lease.token": "tok", "status": "processing"}
    lease = {"owner": "agent-1", "token": "tok", "expires_at": LEASE_END}
    assert with_progress["q"] == {"_id": 7, **fence}
    assert with_progress["u"] == {"$set": {"lease": lease, "progress": {"step": 2}}}
    assert others["q"] == {**fence, "_id": {"$nin": [7]}} and others["multi"] is True


async def test_release_is_fenced_and_can_undo_the_attempt(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    await store.release("tok", [1, 2], undo_attempt=True)
    [(_, command)] = recorder.take()
    [statement] = command["updates"]
    assert statement["q"] == {"_id": {"$in": [1, 2]}, "lease.token": "tok", "status": "processing"}
    assert statement["u"] == {
        "$set": {"status": "pending"},
        "$unset": {"lease": "", "limit_slot": "", "key_slot": ""},
        "$inc": {"attempts": -1},
    }


async def test_settling_a_dependency_is_one_ordered_bulk_write_after_the_outcome(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    from pulling_agent.client import aio
    from pulling_agent.queue import workflow as wf

    store, recorder = rec
    await store.collection.delete_many({})
    a = await aio.enqueue(store.collection, {"n": "a"})
    await aio.enqueue(store.collection, {"n": "b"}, after=[a.id])
    [claim] = await store.claim("agent-1", 5, 30, T, [ClaimKind.FRESH])
    recorder.take()
    done = wf.annotate(Completion(claim.doc_id, claim.token, OutcomeKind.PROCESSED), claim.document)
    assert done.dependents
    await store.complete([done], T)
    (_, outcome), (name, settle) = recorder.take()
    assert "dependents" not in outcome["updates"][0]["q"], "a known dependency needs no fence"
    key = wf.dep_key(claim.doc_id)
    assert name == "update" and settle["ordered"] is True
    release, promote = settle["updates"]
    assert release["q"] == {"status": "waiting", f"waiting_on.{key}": {"$exists": True}}
    assert release["u"] == {"$unset": {f"waiting_on.{key}": ""}, "$inc": {"waiting": -1}}
    assert promote["q"] == {"status": "waiting", "waiting": 0}
    assert promote["u"] == {
        "$set": {"status": "pending"},
        "$unset": {"waiting": "", "waiting_on": ""},
    }
    assert release["multi"] is True and promote["multi"] is True


async def test_a_flush_of_batch_members_adds_one_counter_update_per_batch(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    from pulling_agent.client import Job, aio
    from pulling_agent.queue import workflow as wf

    store, recorder = rec
    await store.collection.delete_many({})
    batch = await aio.enqueue_many(
        store.collection, [{"n": i} for i in range(5)], then=Job({"report": 1})
    )
    claims = await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH])
    assert all(c.document.get("batch_id") == batch.batch_id for c in claims), claims
    recorder.take()
    kinds = [OutcomeKind.PROCESSED, OutcomeKind.PROCESSED, OutcomeKind.FAILED]
    await store.complete(
        [
            wf.annotate(Completion(c.doc_id, c.token, k, reason="x"), c.document)
            for c, k in zip(claims, kinds, strict=True)
        ],
        T,
    )
    sent = recorder.take()
    assert [name for name, _ in sent] == ["update", "findAndModify"]
    bump = sent[1][1]
    assert bump["query"] == {"batch.id": batch.batch_id, "status": "waiting"}
    assert bump["update"] == {"$inc": {"batch.processed": 2, "batch.failed": 1}}


async def test_a_fair_claim_reads_on_from_its_place_in_the_key_space(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    """queue.fairness: the walk's read is an equality on the priority level and a range on
    the key, on the index {status, available_at, priority: -1, key}: it costs the documents
    it returns, never the tenants it passes."""
    store, recorder = rec
    store.walk = Walk("n")
    await store.ensure_indexes()
    recorder.take()
    first = await store.claim("agent-1", 5, 30, T, [ClaimKind.FRESH])
    assert [c.document["n"] for c in first] == [0, 1, 2, 3, 4], "the smallest keys first"
    [(_, probe), (_, find), _update] = recorder.take()
    # a round begins: one document's look for keys of a type not seen (numbers), by range
    assert probe["filter"] == {
        "status": "pending",
        "available_at": None,
        "n": {"$gte": float("-inf")},
    }
    assert probe["limit"] == 1
    assert find["filter"] == {"status": "pending", "available_at": None}
    assert find["sort"] == {"priority": -1, "n": 1} and find["limit"] == 10
    await store.claim("agent-1", 5, 30, T, [ClaimKind.FRESH])
    [(_, head), (_, walk), _update] = recorder.take()
    assert head["limit"] == 1 and head["sort"] == {"priority": -1}, "a look at the head's level"
    assert walk["filter"] == {
        "status": "pending",
        "available_at": None,
        "priority": None,
        "n": {"$gt": 4},
    }
    assert walk["sort"] == {"priority": -1, "n": 1}
    assert fair_index("n")["pulling_agent_fair"].keys == [
        ("status", 1),
        ("available_at", 1),
        ("priority", -1),
        ("n", 1),
    ]


async def test_limited_claims_set_each_documents_slots_and_free_them_with_the_lease(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    store.limiter = Limiter(Limits(key_field="n", key_limit=1, fleet={"t": 2}))
    await store.collection.update_many({"n": {"$lt": 3}}, {"$set": {"type": "t"}})
    recorder.take()
    claims = await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH])
    commands = recorder.take()
    # n=2 waits (type t has 2 slots): a second round takes n=3 from the spare candidates
    # a scope of one slot has none to choose: only the type's slots are read
    assert [name for name, _ in commands] == ["find", "find", "update", "update"]
    (_, find), (_, held), (_, update), (_, update_again) = commands
    assert held["filter"] == {"limit_slot": {"$gte": "t:t#", "$lt": "t:t$"}}
    assert held["projection"] == {"limit_slot": 1, "key_slot": 1}
    assert update["ordered"] is False, "one round trip, each document its own slots"
    first, second = update["updates"]
    assert first["q"] == {"_id": claims[0].doc_id, "status": "pending", "available_at": None}
    assert first["u"]["$set"]["limit_slot"] == "t:t#0"
    assert first["u"]["$set"]["key_slot"] == "k:*=i:0#0"
    assert second["u"]["$set"]["limit_slot"] == "t:t#1"
    [third] = update_again["updates"]
    assert third["q"]["type"] == {"$nin": ["t"]}, "the full type is left out (on its bounds)"
    assert "$nor" not in third["q"], "a $nor would read through the full type's backlog"
    assert third["u"]["$set"]["key_slot"] == "k:*=i:3#0" and "limit_slot" not in third["u"]["$set"]
    assert [c.document["n"] for c in claims] == [0, 1, 3]
    done = [Completion(c.doc_id, c.token, OutcomeKind.PROCESSED) for c in claims]
    await store.complete(done, T)
    [(_, outcome)] = recorder.take()
    [statement] = outcome["updates"]
    assert {"limit_slot", "key_slot", "lease"} <= set(statement["u"]["$unset"]), "freed with it"


async def test_an_agent_routed_to_full_types_only_reads_nothing_until_a_slot_frees(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    store, recorder = rec
    store.limiter = Limiter(Limits(fleet={"t": 1}))
    store.scope = claim_scope("type", ["t"])
    await store.collection.update_many({}, {"$set": {"type": "t"}})
    recorder.take()
    [claim] = await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH])
    assert [name for name, _ in recorder.take()] == ["find", "update"], "1 slot: no held read"
    assert await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH]) == []
    assert recorder.take() == [], "its only type is full: no read through that backlog"
    await store.complete([Completion(claim.doc_id, claim.token, OutcomeKind.PROCESSED)], T)
    recorder.take()
    assert len(await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH])) == 1, "freed: read"
    assert await store.ensure_indexes() == []
    fields = [list(index["key"]) async for index in await store.collection.list_indexes()]
    typed = typed_index("type")["pulling_agent_limited_types"].keys
    assert [name for name, _ in typed] in fields, "full types skipped by the index bounds"


async def test_a_read_past_the_full_types_that_found_nothing_is_not_sent_again(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    """One type full, a backlog of it and nothing else: the claim that found the type full
    reads past it once; the next claims read only the head while the same scopes are full
    (else every claim ends in that read), and claim again once a slot frees."""
    store, recorder = rec
    store.limiter = Limiter(Limits(fleet={"t": 1}))
    await store.collection.update_many({}, {"$set": {"type": "t"}})
    recorder.take()
    [claim] = await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH])
    commands = recorder.take()
    assert [name for name, _ in commands] == ["find", "update", "find"], "no doomed write"
    assert commands[-1][1]["filter"]["type"] == {"$nin": ["t"]}, "past the full type, once"
    for _ in range(3):
        assert await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH]) == []
    later = recorder.take()
    assert later and all(name == "find" for name, _ in later), "no doomed write of slot 0"
    assert all("type" not in c["filter"] for _, c in later), "the head: not past it again"
    await store.complete([Completion(claim.doc_id, claim.token, OutcomeKind.PROCESSED)], T)
    recorder.take()
    assert len(await store.claim("agent-1", 3, 30, T, [ClaimKind.FRESH])) == 1, "freed: read"


async def test_results_ride_in_the_outcome_write_no_extra_round_trip(
    rec: tuple[MongoWorkStore, Recorder],
) -> None:
    """queue.results: a document with a result (or a result_error) gets its own update in
    the same bulk write; those without stay in the one update_many of their lease."""
    store, recorder = rec
    claims = await store.claim("agent-1", 4, 30, T, [ClaimKind.FRESH])
    recorder.take()
    token = claims[0].token
    answer, refused = kept({"rows": 12}, 16_384), kept({"x": "x" * 100}, 10)
    await store.complete(
        [
            Completion(claims[0].doc_id, token, OutcomeKind.PROCESSED, result=answer),
            Completion(claims[1].doc_id, token, OutcomeKind.PROCESSED),
            Completion(claims[2].doc_id, token, OutcomeKind.PROCESSED, result=refused),
            Completion(claims[3].doc_id, token, OutcomeKind.PROCESSED),
        ],
        T,
    )
    [(name, command)] = recorder.take()
    assert name == "update"
    first, third, rest = command["updates"]
    assert first["q"]["_id"] == claims[0].doc_id
    assert first["u"]["$set"] == {"status": "processed", "processed_at": T, "result": {"rows": 12}}
    assert third["u"]["$set"]["result_error"].startswith("the result is 126 bytes encoded")
    assert "result" not in third["u"]["$set"]
    assert rest["q"]["_id"] == {"$in": [claims[1].doc_id, claims[3].doc_id]}
    assert rest["u"]["$set"] == {"status": "processed", "processed_at": T}
    assert "result" not in rest["u"]["$unset"], "a field a handler wrote itself is left alone"
