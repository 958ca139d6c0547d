"""The producer API over the wire: enqueue, idempotent keys, delays and priority, sync and
async, through the real PyMongo driver."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from pulling_agent.client import EnqueueError, InvalidJob, Job, aio, enqueue, enqueue_many
from pulling_agent.queue.model import ClaimKind
from pulling_agent.queue.mongo import MongoWorkStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def awork(mongo_uri: str, db_name: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    yield client[db_name]["work"]
    await client.drop_database(db_name)
    await client.close()


def test_enqueue_writes_a_pending_document_with_its_options(work: Any) -> None:
    before = datetime.now(UTC)
    result = enqueue(work, {"to": "a@example.com"}, type="email", priority=7, delay=60)
    assert result.created and result.key is None
    doc = work.find_one({"_id": result.id})
    assert (doc["to"], doc["type"], doc["priority"], doc["status"], doc["attempts"]) == (
        "a@example.com",
        "email",
        7,
        "pending",
        0,
    )
    assert before + timedelta(seconds=59) < doc["available_at"] < before + timedelta(seconds=62)
    assert isinstance(doc["enqueued_at"], datetime)


def test_the_same_key_twice_is_one_document(work: Any) -> None:
    first = enqueue(work, {"n": 1}, key="order-42")
    again = enqueue(work, {"n": 2}, key="order-42")
    assert first.created and not again.created
    assert again.id == first.id and again.key == "order-42"
    assert [d["n"] for d in work.find({})] == [1], "the second payload was not written"


@pytest.mark.parametrize("other", ["invoice", None])
def test_a_key_taken_by_another_type_is_refused_not_dropped(work: Any, other: str | None) -> None:
    email = enqueue(work, {"to": "a@example.com"}, key="order-1", type="email")
    with pytest.raises(EnqueueError, match="belongs to a document of type 'email'") as refused:
        enqueue(work, {"amount": 5}, key="order-1", type=other)
    assert refused.value.results == [None]
    assert work.find({}).to_list() == [work.find_one({"_id": email.id})], "nothing else written"
    mixed = enqueue_many(work, [Job({"n": 1}, key="order-2", type="invoice")])
    assert mixed[0].created, "the invoice goes in under a key of its own"


def test_enqueue_many_reports_each_document_in_input_order(work: Any) -> None:
    enqueue(work, {"old": True}, key="k-old")
    results = enqueue_many(
        work,
        [
            {"plain": 1},
            Job({"x": 1}, key="k-old"),
            Job({"x": 2}, key="k-new"),
            Job({"x": 3}, key="k-new"),  # the same key twice in one call
            {"_id": "mine"},
            {"_id": "mine"},
        ],
    )
    assert [r.created for r in results] == [True, False, True, False, True, False]
    assert results[1].id == work.find_one({"old": True})["_id"]
    assert results[2].id == results[3].id
    assert results[4].id == results[5].id == "mine"
    assert len(work.find({}).to_list()) == 4


def test_concurrent_producers_with_one_key_make_one_document(work: Any) -> None:
    enqueue(work, {"warm": True}, key="warm")  # the index exists before the race
    results: list[Any] = []
    start = threading.Barrier(8)

    def produce(n: int) -> None:
        start.wait(timeout=10)
        results.append(enqueue(work, {"producer": n}, key="race"))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8
    assert sum(r.created for r in results) == 1
    assert len({r.id for r in results}) == 1
    assert len(work.find({"enqueue_key": "race"}).to_list()) == 1


BAD_JOBS = [
    pytest.param(Job({"status": "done"}), "status", id="reserved-status"),
    pytest.param(Job({"attempts": 0}), "attempts", id="reserved-attempts"),
    pytest.param(Job({"priority": 1}), "priority option", id="priority-in-payload"),
    pytest.param(Job({"enqueue_key": "k"}), "key option", id="key-in-payload"),
    pytest.param(Job({1: "x"}), "strings", id="non-string-key"),  # type: ignore[dict-item]
    pytest.param(Job([1, 2]), "mapping", id="payload-list"),  # type: ignore[arg-type]
    pytest.param(Job({}, priority=True), "priority", id="priority-bool"),
    pytest.param(Job({}, priority=-1), "priority", id="priority-negative"),
    pytest.param(Job({}, priority=10**7), "priority", id="priority-huge"),
    pytest.param(Job({}, priority=1.5), "priority", id="priority-float"),  # type: ignore[arg-type]
    pytest.param(Job({}, priority="9"), "priority", id="priority-string"),  # type: ignore[arg-type]
    pytest.param(Job({}, delay=math.nan), "finite", id="delay-nan"),
    pytest.param(Job({}, delay=math.inf), "finite", id="delay-inf"),
    pytest.param(Job({}, delay=-1), "between", id="delay-negative"),
    pytest.param(Job({}, delay=10**12), "between", id="delay-huge"),
    pytest.param(Job({}, delay="5"), "seconds", id="delay-string"),  # type: ignore[arg-type]
    pytest.param(Job({}, run_at=datetime(2030, 1, 1)), "timezone", id="run-at-naive"),
    pytest.param(Job({}, run_at=NOW, delay=1), "not both", id="delay-and-run-at"),
    pytest.param(Job({}, key=""), "key", id="key-empty"),
    pytest.param(Job({}, key="k" * 513), "key", id="key-too-long"),
    pytest.param(Job({}, key=5), "key", id="key-int"),  # type: ignore[arg-type]
    pytest.param(Job({"type": "a"}, type="b"), "differs", id="type-conflict"),
    pytest.param(Job({}, type="\x00" * 300), "type", id="type-too-long"),
]


@pytest.mark.parametrize(("job", "says"), BAD_JOBS)
def test_an_invalid_job_is_refused_before_anything_is_written(
    work: Any, job: Job, says: str
) -> None:
    with pytest.raises(InvalidJob, match=says):
        enqueue_many(work, [{"fine": True}, job])
    assert work.find({}).to_list() == [], "nothing of the call was written"


def test_keys_cannot_be_made_idempotent_without_their_index(work: Any) -> None:
    work.insert_many([{"enqueue_key": "dup"}, {"enqueue_key": "dup"}])
    with pytest.raises(EnqueueError, match="unique index"):
        enqueue(work, {}, key="fresh")
    assert work.find_one({"enqueue_key": "fresh"}) is None


async def test_the_async_client_does_the_same(awork: Any) -> None:
    first = await aio.enqueue(awork, {"n": 1}, key="a", type="email", run_at=NOW)
    again = await aio.enqueue(awork, {"n": 2}, key="a", type="email")
    assert first.created and not again.created and first.id == again.id
    many = await aio.enqueue_many(awork, [{"n": 3}, Job({"n": 4}, key="a", type="email")])
    assert [r.created for r in many] == [True, False]
    doc = await awork.find_one({"_id": first.id})
    assert "available_at" not in doc, "a run_at in the past is due at once: fresh work"


async def test_a_delayed_document_is_claimed_when_due_not_before(awork: Any) -> None:
    result = await aio.enqueue(awork, {"later": True}, delay=timedelta(minutes=5))
    doc = await awork.find_one({"_id": result.id})
    due = doc["available_at"]
    store = MongoWorkStore(awork)
    kinds = [ClaimKind.DUE_RETRY, ClaimKind.FRESH]
    assert await store.claim("a", 10, 30, due - timedelta(seconds=1), kinds) == []
    [claim] = await store.claim("a", 10, 30, due, kinds)
    assert claim.doc_id == result.id and claim.kind is ClaimKind.DUE_RETRY


async def test_fresh_work_is_claimed_highest_priority_first(awork: Any) -> None:
    jobs = [Job({"n": n}, priority=p) for n, p in enumerate([1, None, 5, 0, 5, 3, None, 9])]
    await aio.enqueue_many(awork, jobs)
    store = MongoWorkStore(awork)
    order = []
    for _ in range(4):
        claims = await store.claim("a", 2, 30, NOW, [ClaimKind.FRESH])
        order += [(c.document.get("priority"), c.document["n"]) for c in claims]
    assert [p for p, _ in order] == [9, 5, 5, 3, 1, 0, None, None]
    assert [n for p, n in order if p == 5] == [2, 4], "equal priorities: oldest first"


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_producer_times_documents_on_mongodbs_clock_for_a_hello_a_minute(
    mongo_uri: str, db_name: str, kind: str
) -> None:
    seen = Commands()
    if kind == "sync":
        sync: MongoClient[dict[str, Any]] = MongoClient(
            mongo_uri, tz_aware=True, event_listeners=[seen]
        )
        work = sync[db_name]["work"]
        for n in range(5):
            enqueue(work, {"n": n}, delay=30)
        local_time = sync.admin.command("hello")["localTime"]
        docs = list(work.find())
        sync.close()
    else:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            mongo_uri, tz_aware=True, event_listeners=[seen]
        )
        awork = client[db_name]["work"]
        for n in range(5):
            await aio.enqueue(awork, {"n": n}, delay=30)
        local_time = (await client.admin.command("hello"))["localTime"]
        docs = await awork.find().to_list()
        await client.close()
    hellos = [n for n in seen.names if n == "hello"]
    assert len(hellos) == 2 + 1, seen.names  # two on the first call, none after; ours
    assert seen.names.count("insert") == 5
    server_now = local_time.replace(tzinfo=UTC)
    for doc in docs:  # due 30 s after MongoDB's clock read it, within the calls' span
        ahead = (doc["available_at"] - server_now).total_seconds()
        assert 29.0 < ahead <= 30.01, doc


def test_two_clients_of_one_uri_keep_their_own_clock(mongo_uri: str, db_name: str) -> None:
    """Clients of one URI compare equal (PyMongo compares their options): a clock kept by
    client would be shared, and the second would never ask the server (a flaky test saw
    it: one hello instead of three, when an earlier test's client was still alive)."""
    first: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    seen = Commands()
    second: MongoClient[dict[str, Any]] = MongoClient(
        mongo_uri, tz_aware=True, event_listeners=[seen]
    )
    try:
        assert first == second
        enqueue(first[db_name]["work"], {"n": 1})
        enqueue(second[db_name]["work"], {"n": 2})
        assert seen.names.count("hello") == 2, seen.names
    finally:
        first.close()
        second.close()
