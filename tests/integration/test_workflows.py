"""Dependencies and batches (queue.workflow): one contract for the in-memory store and MongoDB
over the wire, plus the MongoDB-only races (enqueue while a dependency ends, a claim that
read a dependency before its dependents existed, a crash between an outcome and its
settling) and the producer's refusals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from pulling_agent.client import InvalidJob, Job, aio
from pulling_agent.client.enqueue import Batch, enqueue_flow, prepare
from pulling_agent.queue import workflow as wf
from pulling_agent.queue.limits import Limiter, Limits
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.queue.model import Claim, ClaimKind, Completion, OutcomeKind, WorkStore
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.queue.ops import Update, perform_async, run_async
from tests.conftest import async_wait_until
from tests.deviations import MIXED_ID_TYPES_IN_UPDATE, SUBDOCUMENT_IN_IN, nx_deviation

ALL = (ClaimKind.EXPIRED, ClaimKind.DUE_RETRY, ClaimKind.FRESH)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Flowing:
    """A store, and a way to enqueue into it as the producer client does."""

    def __init__(self, store: WorkStore, collection: Any = None) -> None:
        self.store = store
        self.collection = collection

    async def enqueue(
        self, jobs: Sequence[Job | Mapping[str, Any]], then: Job | None = None
    ) -> list[Any]:
        if self.collection is not None:
            results = await aio.enqueue_many(self.collection, jobs, then=then)
            ids = [r.id for r in results]
            return [*ids, results.then.id] if isinstance(results, Batch) else ids
        assert isinstance(self.store, MemoryWorkStore)
        batch, after, then_doc = prepare(jobs, "type", then)  # what the client writes
        for doc, deps in zip(batch.docs, after, strict=True):
            if deps:
                keys = {wf.dep_key(d): d for d in deps}
                doc.update(status="waiting", after=list(keys.values()), waiting=len(keys))
                doc[wf.WAITING_ON] = keys
                for dep in deps:
                    self.store._docs[dep][wf.DEPENDENTS] = True
        then_ids = self.store.insert([then_doc]) if then_doc is not None else []
        ids = self.store.insert(batch.docs)
        if then_doc is not None:
            self.store._docs[then_ids[0]][wf.BATCH][wf.STATE] = wf.SEALED
        return ids + then_ids

    async def get(self, doc_id: Any) -> dict[str, Any]:
        if self.collection is None:
            assert isinstance(self.store, MemoryWorkStore)
            return self.store.get(doc_id)
        doc: dict[str, Any] = await self.collection.find_one({"_id": doc_id})
        return doc

    async def status(self, *ids: Any) -> list[str]:
        return [(await self.get(i))["status"] for i in ids]

    async def claim(self, owner: str = "a1", limit: int = 100) -> list[Claim]:
        return await self.store.claim(owner, limit, 30, now(), ALL)

    async def finish(
        self, claims: Sequence[Claim], kind: OutcomeKind = OutcomeKind.PROCESSED
    ) -> int:
        return await self.store.complete(
            [wf.annotate(Completion(c.doc_id, c.token, kind), c.document) for c in claims], now()
        )


@pytest.fixture(params=["memory", "mongo"])
async def f(request: pytest.FixtureRequest, mongo_uri: str, db_name: str) -> AsyncIterator[Flowing]:
    if request.param == "memory":
        yield Flowing(MemoryWorkStore())
        return
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    collection = client[db_name]["work"]
    store = MongoWorkStore(collection)
    await store.ensure_indexes()
    yield Flowing(store, collection)
    await client.drop_database(db_name)
    await client.close()


@pytest.fixture
async def mongo(mongo_uri: str, db_name: str) -> AsyncIterator[Flowing]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    collection = client[db_name]["work"]
    yield Flowing(MongoWorkStore(collection), collection)
    await client.drop_database(db_name)
    await client.close()


def ids_of(claims: Sequence[Claim]) -> set[Any]:
    return {c.doc_id for c in claims}


# ------------------------------------------------------------------ dependencies


async def test_a_dependent_is_never_claimed_before_its_dependency_is_processed(f: Flowing) -> None:
    [a] = await f.enqueue([{"n": "a"}])
    [b] = await f.enqueue([Job({"n": "b"}, after=[a])])
    assert await f.status(b) == ["waiting"]
    claims = await f.claim()
    assert ids_of(claims) == {a}, "only the dependency is claimable"
    assert await f.claim() == []
    assert await f.finish(claims) == 1
    assert await f.status(a, b) == ["processed", "pending"]
    doc = await f.get(b)
    assert wf.WAITING_ON not in doc and wf.WAITING not in doc and doc[wf.AFTER] == [a]
    assert ids_of(await f.claim()) == {b}


async def test_a_dependent_waits_through_retries_and_a_lost_lease(f: Flowing) -> None:
    [a] = await f.enqueue([{"n": "a"}])
    [b] = await f.enqueue([Job({"n": "b"}, after=[a])])
    first = await f.claim()
    await f.finish(first, OutcomeKind.RETRY)  # a failure with attempts left
    assert await f.status(a, b) == ["pending", "waiting"]
    # claimed again, then its lease expires and another agent takes it over
    second = await f.store.claim("a1", 10, -1, now(), ALL)
    taken = await f.store.claim("a2", 10, 30, now() + timedelta(seconds=1), ALL)
    assert ids_of(taken) == {a}
    assert await f.finish(second) == 0, "the late finisher changes nothing"
    assert await f.status(b) == ["waiting"], "a processed outcome that missed released nothing"
    assert await f.finish(taken) == 1
    assert await f.status(a, b) == ["processed", "pending"]


async def test_a_dependent_of_several_waits_for_all(f: Flowing) -> None:
    a, c = await f.enqueue([{"n": "a"}, {"n": "c"}])
    [b] = await f.enqueue([Job({"n": "b"}, after=[a, c, a])])
    assert (await f.get(b))[wf.WAITING] == 2, "a dependency named twice counts once"
    claims = await f.claim()
    await f.finish([x for x in claims if x.doc_id == a])
    assert await f.status(b) == ["waiting"]
    await f.finish([x for x in claims if x.doc_id == c])
    assert await f.status(b) == ["pending"]


@pytest.mark.parametrize("outcome", [OutcomeKind.FAILED, OutcomeKind.CANCELLED])
async def test_a_failed_dependency_cancels_its_dependents_transitively(
    f: Flowing, outcome: OutcomeKind
) -> None:
    [a] = await f.enqueue([{"n": "a"}])
    b, anyway = await f.enqueue(
        [Job({"n": "b"}, after=[a]), Job({"n": "x"}, after=[a], on_dependency_failure="run")]
    )
    [c] = await f.enqueue([Job({"n": "c"}, after=[b])])
    await f.finish(await f.claim(), outcome)
    assert await f.status(b, c, anyway) == ["cancelled", "cancelled", "pending"]
    assert (await f.get(b))["cancel_reason"] == f"dependency {a} ended {outcome.value}"
    assert (await f.get(c))["cancel_reason"] == f"dependency {b} ended cancelled"
    assert ids_of(await f.claim()) == {anyway}


async def test_cancelling_a_waiting_or_pending_dependency_cancels_its_dependents(
    f: Flowing,
) -> None:
    [a] = await f.enqueue([{"n": "a"}])
    [b] = await f.enqueue([Job({"n": "b"}, after=[a])])
    [c] = await f.enqueue([Job({"n": "c"}, after=[b])])
    result = await f.store.cancel([b], "ops", now())
    assert result.cancelled == [b]
    assert await f.status(a, b, c) == ["pending", "cancelled", "cancelled"]
    assert (await f.get(c))["cancel_reason"] == f"dependency {b} ended cancelled"


async def dependency_chain(f: Flowing, ids: list[Any]) -> None:
    for doc_id in ids:
        await f.enqueue([{"_id": doc_id, "n": "dep"}])
    [b] = await f.enqueue([Job({"n": "b"}, after=ids)])
    assert (await f.get(b))[wf.WAITING] == len(ids)
    claims = await f.claim()
    assert len(claims) == len(ids)
    await f.finish(claims[:-1])
    assert await f.status(b) == ["waiting"]
    await f.finish(claims[-1:])
    assert await f.status(b) == ["pending"]


@pytest.mark.parametrize(
    "ids",
    [
        [5, 2**40],
        ["ünïcödé\x1b[2J", ObjectId(), 2.5],
        pytest.param(
            [7, "seven", ObjectId()],
            marks=nx_deviation(MIXED_ID_TYPES_IN_UPDATE),
            id="mixed",
        ),
    ],
)
async def test_any_id_type_works_as_a_dependency(f: Flowing, ids: list[Any]) -> None:
    await dependency_chain(f, ids)


@nx_deviation(SUBDOCUMENT_IN_IN)
async def test_a_sub_document_id_works_as_a_dependency(mongo: Flowing) -> None:
    await dependency_chain(mongo, [{"order": 1, "line": 2}, {"order": 1, "line": 3}])


# ------------------------------------------------------------------ batches


async def test_a_batch_then_job_runs_once_after_every_member_ended(f: Flowing) -> None:
    *members, then = await f.enqueue(
        [{"n": i} for i in range(5)], then=Job({"report": True}, type="report")
    )
    assert await f.status(then) == ["waiting"]
    claims = await f.claim(limit=3)
    assert then not in ids_of(claims)
    await f.finish(claims[:2])
    await f.finish(claims[2:], OutcomeKind.FAILED)
    rest = await f.claim()
    assert then not in ids_of(rest) and len(rest) == 2
    await f.finish(rest[:1], OutcomeKind.CANCELLED)
    assert await f.status(then) == ["waiting"], "one member is still processing"
    progress = (await f.get(then))[wf.BATCH]
    assert (progress["processed"], progress["failed"], progress["cancelled"]) == (2, 1, 1)
    await f.finish(rest[1:])
    assert await f.status(then) == ["pending"]
    summary = (await f.get(then))[wf.BATCH]
    assert {k: summary[k] for k in ("size", "processed", "failed", "cancelled", "missing")} == {
        "size": 5,
        "processed": 3,
        "failed": 1,
        "cancelled": 1,
        "missing": 0,
    }
    [running] = await f.claim()
    assert running.doc_id == then
    await f.store.sweep(now())  # a sweep (any agent's) looks at batches again
    doc = await f.get(then)
    assert doc["status"] == "processing", "a then job is made pending once, never again"
    assert doc["lease"]["token"] == running.token and len(members) == 5


async def test_a_then_job_and_a_dependent_obey_their_limits_and_keep_their_key_on_retry(
    f: Flowing,
) -> None:
    """A workflow's documents are documents: released, they wait for their type's and their
    key's slots like any other, and a retry keeps the key (and frees the slots)."""
    f.store.limiter = Limiter(Limits(fleet={"invoice": 1}, key_field="tenant", key_limit=1))  # type: ignore[attr-defined]
    await f.store.ensure_indexes()
    [first] = await f.enqueue([Job({"tenant": "acme"}, type="invoice")])
    [holder] = await f.claim()
    assert holder.doc_id == first
    *members, then = await f.enqueue(
        [Job({"tenant": f"m{i}"}, type="mail") for i in range(2)],
        then=Job({"tenant": "zeta"}, type="invoice"),
    )
    [dependent] = await f.enqueue([Job({"tenant": "acme"}, type="mail", after=[members[0]])])
    claims = await f.claim()
    assert ids_of(claims) == set(members)
    await f.finish(claims)
    assert await f.status(then, dependent) == ["pending", "pending"]
    assert await f.claim() == [], "invoice's one slot and acme's are held by the first"
    await f.finish([holder])
    released: dict[Any, Claim] = {}

    async def both() -> bool:  # a scope found full stays out of reads for up to a second
        released.update((c.doc_id, c) for c in await f.claim())
        return set(released) == {then, dependent}

    await async_wait_until(both, timeout=10, interval=0.05, what="both released documents")
    doc = await f.get(then)
    assert (doc["limit_slot"], doc["key_slot"]) == ("t:invoice#0", "k:*=s:zeta#0")
    retry = Completion(then, released[then].token, OutcomeKind.RETRY, available_at=now())
    assert await f.store.complete([retry], now()) == 1
    doc = await f.get(then)
    assert doc["status"] == "pending" and doc["tenant"] == "zeta"
    assert "limit_slot" not in doc and "key_slot" not in doc
    [again] = await f.claim()
    assert again.doc_id == then and (await f.get(then))["key_slot"] == "k:*=s:zeta#0"


async def test_a_cancelled_member_counts_as_ended(f: Flowing) -> None:
    *members, then = await f.enqueue([{"n": 1}, {"n": 2}], then=Job({"report": True}))
    await f.store.cancel(members, "ops", now())
    assert await f.status(then) == ["pending"]
    assert (await f.get(then))[wf.BATCH]["cancelled"] == 2


async def test_two_agents_finishing_the_last_members_promote_the_then_job_once(
    f: Flowing,
) -> None:
    *_, then = await f.enqueue([{"n": 1}, {"n": 2}], then=Job({"report": True}))
    one = await f.claim("a1", 1)
    two = await f.claim("a2", 1)
    assert await f.finish(one) == 1 and await f.finish(two) == 1
    assert await f.status(then) == ["pending"]
    assert len(await f.claim("a3")) == 1, "exactly one then document to run"


# ------------------------------------------------------------------ MongoDB races


async def test_two_closers_racing_promote_the_then_job_once(mongo: Flowing) -> None:
    """Two agents both see the batch's last member end and both try to close it; the one
    that writes second (its look at the members made before the first closed it) must
    change nothing, even though the then job is already running."""
    [member, then] = await mongo.enqueue([{"n": 1}], then=Job({"report": True}))
    await mongo.collection.update_one({"_id": member}, {"$set": {"status": "processed"}})
    batch = (await mongo.get(then))[wf.BATCH]
    late = wf.close(then, batch, now())
    reply: Any = None
    op = late.send(reply)
    while not isinstance(op, Update):  # up to its write
        op = late.send(await perform_async(op, mongo.collection))
    assert await run_async(wf.close(then, batch, now()), mongo.collection) == 1
    [running] = await mongo.claim()
    assert running.doc_id == then
    assert await perform_async(op, mongo.collection) == 0, "the late closer changed nothing"
    assert (await mongo.get(then))["lease"]["token"] == running.token


async def test_a_dependency_ending_at_any_point_of_an_enqueue_is_never_lost(
    mongo: Flowing,
) -> None:
    """Drive the producer's flow by hand and finish the dependency before each of its steps
    in turn: the dependent ends pending every time (no lost wake-up)."""
    steps = 0
    while True:
        await mongo.collection.delete_many({})
        [a] = await mongo.enqueue([{"n": "a"}])
        claims = await mongo.claim()
        batch, after, then = prepare([Job({"n": "b"}, after=[a])], "type", None)
        flow = enqueue_flow(batch, after, then)
        reply: Any = None
        finished_at = None
        n = 0
        try:
            while True:
                op = flow.send(reply)
                if n == steps:
                    await mongo.finish(claims)
                    finished_at = n
                reply = await perform_async(op, mongo.collection)
                n += 1
        except StopIteration:
            pass
        if finished_at is None:
            await mongo.finish(claims)
        b = batch.docs[0]["_id"]
        assert await mongo.status(a, b) == ["processed", "pending"], f"finished before step {steps}"
        if finished_at is None:
            break
        steps += 1
    assert steps >= 4, "the flow has a step per round trip"


async def test_a_claim_made_before_a_dependent_existed_still_releases_it(mongo: Flowing) -> None:
    [a] = await mongo.enqueue([{"n": "a"}])
    claims = await mongo.claim()
    assert wf.DEPENDENTS not in claims[0].document, "claimed before anyone depended on it"
    [b] = await mongo.enqueue([Job({"n": "b"}, after=[a])])
    assert await mongo.status(b) == ["waiting"]
    assert await mongo.finish(claims) == 1
    assert await mongo.status(a, b) == ["processed", "pending"]


async def test_the_sweep_repairs_what_a_crash_left_unsettled(mongo: Flowing) -> None:
    [a] = await mongo.enqueue([{"n": "a"}])
    [b] = await mongo.enqueue([Job({"n": "b"}, after=[a])])
    *members, then = await mongo.enqueue([{"n": 1}, {"n": 2}], then=Job({"report": True}))
    # an agent wrote the outcomes and died before settling them
    await mongo.collection.update_many(
        {"_id": {"$in": [a, *members]}}, {"$set": {"status": "processed"}}
    )
    assert await mongo.status(b, then) == ["waiting", "waiting"]
    await mongo.store.sweep(now())
    assert await mongo.status(b, then) == ["pending", "pending"]
    assert (await mongo.get(then))[wf.BATCH]["processed"] == 2


async def test_the_sweep_does_not_close_a_batch_still_being_enqueued(mongo: Flowing) -> None:
    then = {"status": "waiting", wf.BATCH: {"id": "b1", "size": 2, wf.STATE: wf.OPEN_BATCH}}
    await mongo.collection.insert_one(then)
    await mongo.store.sweep(now())
    assert await mongo.status(then["_id"]) == ["waiting"]


async def test_hostile_workflow_fields_never_stop_the_sweep(mongo: Flowing) -> None:
    await mongo.collection.insert_many(
        [
            {"status": "waiting", wf.WAITING: 3, wf.WAITING_ON: "not a mapping"},
            {"status": "waiting", wf.WAITING: 1, wf.WAITING_ON: {"dx": {"$weird": 1}}},
            {"status": "waiting", wf.BATCH: {"id": 5, "size": "many", wf.STATE: wf.SEALED}},
            {"status": "waiting", wf.BATCH: {"id": "b2", "size": "many", wf.STATE: wf.SEALED}},
            {"status": "waiting", wf.BATCH: "not a mapping"},
        ]
    )
    [ok] = await mongo.enqueue([{"n": "a"}])
    await mongo.store.sweep(now())
    assert ids_of(await mongo.claim()) == {ok}


# ------------------------------------------------------------------ the producer


async def test_an_unknown_dependency_is_refused_and_nothing_is_written(mongo: Flowing) -> None:
    [a] = await mongo.enqueue([{"n": "a"}])
    with pytest.raises(InvalidJob, match="1 of the documents named in after do not exist"):
        await mongo.enqueue([Job({"n": "b"}, after=[a, "no-such-id"])])
    assert await mongo.collection.count_documents({}) == 1
    assert wf.DEPENDENTS not in await mongo.get(a)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (Job({}, after="abc"), "after must be a list"),
        (Job({}, after=[object()]), "not a document id"),
        (Job({}, after=[1], on_dependency_failure="retry"), "on_dependency_failure must be"),
        (Job({}, after=list(range(1001))), "at most 1000"),
        (Job({"waiting_on": {}}), "a field the agents own"),
        (Job({"batch_id": "x"}), "a field the agents own"),
    ],
)
async def test_bad_workflow_options_are_refused_before_any_io(job: Job, message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        prepare([job], "type", None)


@pytest.mark.parametrize(
    ("jobs", "then", "message"),
    [
        ([], Job({}), "at least one job"),
        ([{}], Job({}, key="k"), "no key and no after"),
        ([{}], {"not": "a job"}, "then must be a Job"),
    ],
)
async def test_bad_batches_are_refused(jobs: list[Any], then: Any, message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        prepare(jobs, "type", then)


async def test_a_retried_batch_whose_members_exist_does_not_run_its_then_job_again(
    mongo: Flowing,
) -> None:
    jobs = [Job({"n": i}, key=f"m-{i}") for i in range(3)]
    first = await aio.enqueue_many(mongo.collection, jobs, then=Job({"report": 1}))
    again = await aio.enqueue_many(mongo.collection, jobs, then=Job({"report": 1}))
    assert isinstance(first, Batch) and isinstance(again, Batch)
    assert first.then.created and not again.then.created
    assert await mongo.status(first.then.id, again.then.id) == ["waiting", "cancelled"]


async def test_the_workflow_indexes_come_with_the_first_workflow_not_with_the_agents(
    mongo: Flowing,
) -> None:
    async def keys() -> list[list[str]]:
        return [list(ix["key"]) async for ix in await mongo.collection.list_indexes()]

    await mongo.store.ensure_indexes()
    [a] = await mongo.enqueue([{"n": "a"}])
    assert ["waiting"] not in await keys() and ["batch_id", "status"] not in await keys()
    await mongo.enqueue([Job({"n": "b"}, after=[a])])
    assert ["waiting"] in await keys() and ["batch_id", "status"] in await keys()


@pytest.mark.parametrize("revive", [False, True])
async def test_requeueing_a_failed_dependency_brings_its_dependents_back_only_when_asked(
    f: Flowing, revive: bool
) -> None:
    [a] = await f.enqueue([{"n": "a"}])
    [b] = await f.enqueue([Job({"n": "b"}, after=[a])])
    [c] = await f.enqueue([Job({"n": "c"}, after=[b])])
    await f.finish(await f.claim(), OutcomeKind.FAILED)
    assert await f.status(b, c) == ["cancelled", "cancelled"]
    assert await f.store.requeue([a]) == 1
    if revive:
        assert await f.store.revive_dependents([a], now()) == 2
    assert await f.status(a) == ["pending"]
    assert await f.status(b, c) == (["waiting", "waiting"] if revive else ["cancelled"] * 2)
    await f.finish(await f.claim())
    if not revive:
        assert await f.status(b, c) == ["cancelled", "cancelled"], "not resurrected unasked"
        return
    assert await f.status(b, c) == ["pending", "waiting"]
    doc = await f.get(b)
    assert "cancel_reason" not in doc and wf.CANCELLED_BY not in doc
    await f.finish(await f.claim())
    assert await f.status(c) == ["pending"]


async def test_the_store_tells_of_closed_batches_and_cancelled_dependents(f: Flowing) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    f.store.on_workflow = lambda event, fields: events.append((event, dict(fields)))
    [a] = await f.enqueue([{"n": "a"}])
    await f.enqueue([Job({"n": "b"}, after=[a]), Job({"n": "c"}, after=[a])])
    await f.finish(await f.claim(), OutcomeKind.FAILED)
    assert events == [("dependents_cancelled", {"dependency": a, "outcome": "failed", "count": 2})]
    events.clear()
    *_, then = await f.enqueue([{"n": 1}], then=Job({"report": 1}))
    await f.finish(await f.claim())
    [(event, fields)] = events
    assert event == "batch_closed" and fields["then_id"] == then
    assert (fields["size"], fields["processed"], fields["missing"]) == (1, 1, 0)


async def test_a_wait_on_a_sub_document_id_never_stops_the_in_memory_sweep() -> None:
    store = MemoryWorkStore()
    dep = {"order": 1}
    store.insert([{"status": "waiting", wf.WAITING: 1, wf.WAITING_ON: {wf.dep_key(dep): dep}}])
    assert await store.sweep(now()) == 0
