"""Fleet-wide limits (queue.limits), one contract for both stores: never more documents of a
limited type or key value processing than its slots, through concurrent claimers, every
outcome, expiry and recovery, and with any value in the key field.

Several MongoDB stores on one collection stand for several agents (each has its own
limiter, as each agent does); the unique slot indexes are what keeps them apart.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from pulling_agent.errors import ConfigError
from pulling_agent.queue import limits
from pulling_agent.queue.limits import Limiter, Limits
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.queue.model import ClaimKind, Completion, OutcomeKind, WorkStore
from pulling_agent.queue.mongo import MongoWorkStore
from tests.deviations import DUPLICATE_KEY_WITHOUT_KEY_VALUE, nx_deviation
from tests.integration.test_store_contract import Harness

ALL = (ClaimKind.EXPIRED, ClaimKind.DUE_RETRY, ClaimKind.FRESH)
INVOICE3 = Limits(fleet={"invoice": 3})
TENANT1 = Limits(key_field="tenant", key_limit=1)


class Fleet(Harness):
    """A harness whose ``agent(limits)`` is one more agent's store on the same queue."""

    def __init__(self, kind: str, make: Callable[[], WorkStore], collection: Any = None) -> None:
        self._make = make
        first = make()
        super().__init__(first, kind, collection)

    def agent(self, limits: Limits) -> WorkStore:
        store = self.store if self.kind == "memory" else self._make()
        store.limiter = Limiter(limits)  # type: ignore[attr-defined]
        return store

    async def statuses(self) -> list[dict[str, Any]]:
        if isinstance(self.store, MemoryWorkStore):
            return [dict(d) for d in self.store.all()]
        found: list[dict[str, Any]] = await self._collection.find({}).to_list(None)
        return found


@pytest.fixture(params=["memory", "mongo"])
async def fleet(
    request: pytest.FixtureRequest, mongo_uri: str, db_name: str
) -> AsyncIterator[Fleet]:
    if request.param == "memory":
        memory = MemoryWorkStore()
        yield Fleet("memory", lambda: memory)
        return
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    collection = client[db_name]["work"]
    yield Fleet("mongo", lambda: MongoWorkStore(collection), collection)
    await client.drop_database(db_name)
    await client.close()


async def agents(fleet: Fleet, limits: Limits, n: int) -> list[WorkStore]:
    stores = [fleet.agent(limits) for _ in range(n)]
    for store in stores:
        assert await store.ensure_indexes() == []
    return stores


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def docs(kind: str, n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"status": "pending", "type": kind, "n": i, **fields} for i in range(n)]


async def running(fleet: Fleet, **match: Any) -> list[dict[str, Any]]:
    return [
        d
        for d in await fleet.statuses()
        if d["status"] == "processing" and all(d.get(k) == v for k, v in match.items())
    ]


async def test_a_type_limit_holds_across_concurrent_claimers(fleet: Fleet) -> None:
    stores = await agents(fleet, INVOICE3, 6)
    await fleet.insert(docs("invoice", 20) + docs("email", 5))
    t = now()
    batches = await asyncio.gather(
        *(s.claim(f"a{i}", 10, 30, t, ALL) for i, s in enumerate(stores))
    )
    claimed = [c.document for batch in batches for c in batch]
    assert len({c["_id"] for c in claimed}) == len(claimed), "a document was claimed twice"
    invoices = await running(fleet, type="invoice")
    assert len(invoices) == 3, "never more than the fleet-wide limit, and it is used"
    assert sorted(d["limit_slot"] for d in invoices) == [
        "t:invoice#0",
        "t:invoice#1",
        "t:invoice#2",
    ]
    assert len(await running(fleet, type="email")) == 5, "a full type hides no other work"
    # a 7th agent finds nothing of the type until a slot frees
    assert [
        c.document["type"] for c in await fleet.agent(INVOICE3).claim("z", 10, 30, t, ALL)
    ] == []


async def test_a_stale_read_of_the_held_slots_never_makes_a_second_holder(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents read the held slots at once, both see slot 0 free: the server's unique
    index refuses the second holder (MongoDB only: the memory store has no such race)."""
    if fleet.kind == "memory":
        pytest.skip("one event loop, no race: the unique slot index is MongoDB's")
    first, second = await agents(fleet, Limits(fleet={"invoice": 2}), 2)
    await fleet.insert(docs("invoice", 5))
    t = now()
    assert len(await first.claim("a1", 5, 30, t, ALL)) == 2

    async def nothing_held(collection: Any, scopes: Any) -> dict[str, Any]:
        return {}  # as read before the first agent's claim landed

    monkeypatch.setattr(limits, "held_slots", nothing_held)
    assert await second.claim("a2", 5, 30, t, ALL) == [], "the slots were taken: duplicates"
    assert len(await running(fleet, type="invoice")) == 2
    assert second.lost_race, "it looks again soon: the work is there"


@pytest.mark.parametrize("outcome", ["processed", "retry", "failed", "cancelled", "release"])
async def test_each_way_out_of_processing_frees_the_slot_in_the_same_write(
    fleet: Fleet, outcome: str
) -> None:
    [store] = await agents(fleet, Limits(fleet={"invoice": 1}), 1)
    await fleet.insert(docs("invoice", 3))
    t = now()
    [first] = await store.claim("a1", 5, 30, t, ALL)
    assert await store.claim("a1", 5, 30, t, ALL) == [], "the only slot is held"
    if outcome == "release":
        assert await store.release(first.token, [first.doc_id], undo_attempt=True) == 1
    else:
        kind = {
            "processed": OutcomeKind.PROCESSED,
            "retry": OutcomeKind.RETRY,
            "failed": OutcomeKind.FAILED,
            "cancelled": OutcomeKind.CANCELLED,
        }[outcome]
        later = t + timedelta(hours=1) if kind is OutcomeKind.RETRY else None
        assert (
            await store.complete(
                [Completion(first.doc_id, first.token, kind, available_at=later)], t
            )
            == 1
        )
    left = await fleet.get(first.doc_id)
    assert "limit_slot" not in left and "lease" not in left
    [second] = await store.claim("a2", 5, 30, t, ALL)
    assert (await fleet.get(second.doc_id))["limit_slot"] == "t:invoice#0"


async def test_a_dead_agents_slot_goes_with_its_document_to_the_recovery_claim(
    fleet: Fleet,
) -> None:
    dead, alive = await agents(fleet, Limits(fleet={"invoice": 1}), 2)
    await fleet.insert(docs("invoice", 3))
    t = now()
    [held] = await dead.claim("dead", 5, 1, t, ALL)  # a lease of 1 s, never renewed
    assert await alive.claim("alive", 5, 30, t, ALL) == [], "the slot is held while the lease lives"
    later = t + timedelta(seconds=5)
    claims = await alive.claim("alive", 5, 30, later, ALL)
    assert [c.doc_id for c in claims] == [held.doc_id], "the interrupted document first, alone"
    doc = await fleet.get(held.doc_id)
    assert doc["lease"]["owner"] == "alive" and doc["limit_slot"] == "t:invoice#0"
    assert len(await running(fleet)) == 1


async def test_a_full_key_at_the_head_does_not_hide_the_keys_behind_it(fleet: Fleet) -> None:
    [store] = await agents(fleet, TENANT1, 1)
    await fleet.insert(docs("job", 40, tenant="big"))
    await fleet.insert([{"status": "pending", "type": "job", "tenant": f"t{i}"} for i in range(5)])
    claims = await store.claim("a1", 10, 30, now(), ALL)
    tenants = Counter(c.document["tenant"] for c in claims)
    assert tenants == Counter({"big": 1, "t0": 1, "t1": 1, "t2": 1, "t3": 1, "t4": 1})


@nx_deviation(DUPLICATE_KEY_WITHOUT_KEY_VALUE)
async def test_a_refused_claim_leaves_out_only_the_scope_the_server_names(fleet: Fleet) -> None:
    """Another agent holds invoice's one slot: a claim of a zeta invoice is refused on the
    type's slot, and zeta's other documents are claimed at once (zeta's key was free)."""
    both = Limits(fleet={"invoice": 1}, key_field="tenant", key_limit=1)
    first, second = await agents(fleet, both, 2)
    await fleet.insert(docs("invoice", 1, tenant="a"))
    [held] = await first.claim("a1", 1, 30, now(), ALL)
    await fleet.insert(docs("invoice", 1, tenant="zeta"))
    await fleet.insert(docs("mail", 1, tenant="zeta"))
    claimed = await second.claim("a2", 1, 30, now(), ALL)
    claimed += await second.claim("a2", 1, 30, now(), ALL)
    assert [(c.document["type"], c.document["tenant"]) for c in claimed] == [("mail", "zeta")]
    assert held.document["tenant"] == "a"


HOSTILE = [
    "acme",
    "ACME",
    "",
    "x" * 100_000,  # slotted by digest
    "$where",
    "a#1",
    "\x00\x1b[31m",
    7,
    -(2**63),
    7.0,  # not 7: slotted by BSON type, as the documents are told apart
    b"\xff\x00",
    True,
    {"$gt": ""},  # an operator-looking value is a value: never put in a filter
    [1, 2],
    ObjectId("0123456789ab0123456789ab"),
    datetime(2026, 1, 1, tzinfo=UTC),
]


async def test_a_key_limit_holds_for_every_value_of_any_type_and_size(fleet: Fleet) -> None:
    stores = await agents(fleet, TENANT1, 3)
    await fleet.insert(
        [{"status": "pending", "tenant": v, "n": n} for v in HOSTILE for n in range(2)]
    )
    await fleet.insert(
        [{"status": "pending", "n": 9}, {"status": "pending", "tenant": None, "n": 9}]
    )
    t = now()
    for _ in range(3):  # whoever wins, at most one per value
        await asyncio.gather(*(s.claim(f"a{i}", 50, 30, t, ALL) for i, s in enumerate(stores)))
    live = await running(fleet)
    slots = [d["key_slot"] for d in live if "key_slot" in d]
    assert len(slots) == len(set(slots)) == len(HOSTILE), "one document per key value"
    assert all(len(s) < 300 for s in slots), "a huge value gives a bounded slot"
    assert len([d for d in live if d.get("tenant") is None]) == 2, "no key: no limit"


async def test_a_type_limit_of_zero_holds_its_documents_back(fleet: Fleet) -> None:
    [store] = await agents(fleet, Limits(fleet={"invoice": 0}), 1)
    await fleet.insert(docs("invoice", 3) + docs("email", 2))
    claims = await store.claim("a1", 10, 30, now(), ALL)
    assert sorted(c.document["type"] for c in claims) == ["email", "email"]


async def test_per_type_and_per_key_limits_hold_together(fleet: Fleet) -> None:
    limits = Limits(
        fleet={"export": 2}, key_field="tenant", key_limit=2, type_key_limits={"export": 1}
    )
    stores = await agents(fleet, limits, 3)
    await fleet.insert(docs("export", 10, tenant="a") + docs("export", 10, tenant="b"))
    await fleet.insert(docs("email", 10, tenant="a"))
    t = now()
    await asyncio.gather(*(s.claim(f"a{i}", 20, 30, t, ALL) for i, s in enumerate(stores)))
    exports = await running(fleet, type="export")
    assert Counter(d["tenant"] for d in exports) == Counter({"a": 1, "b": 1})
    assert len(await running(fleet, type="email")) == 2, "KEY_CONCURRENCY=2 for the other types"


async def test_a_stray_slot_on_a_pending_document_is_cleared_by_the_sweep(fleet: Fleet) -> None:
    [store] = await agents(fleet, Limits(fleet={"invoice": 1}), 1)
    [stray] = await fleet.insert([{"status": "pending", "type": "x", "limit_slot": "t:invoice#0"}])
    await fleet.insert(docs("invoice", 1))
    t = now()
    assert await store.sweep(t) >= 1
    assert "limit_slot" not in await fleet.get(stray)
    claims = await store.claim("a1", 5, 30, t, ALL)
    assert sorted(c.document["type"] for c in claims) == ["invoice", "x"]


async def test_an_agent_refuses_limits_it_cannot_enforce(fleet: Fleet) -> None:
    """A non-unique index already on the slot field: the limits would not hold, so the
    agent does not start (one line naming the index and the fix), instead of claiming."""
    if fleet.kind == "memory":
        pytest.skip("the memory store has no indexes")
    await fleet._collection.create_index([("limit_slot", 1)], name="someone_elses")
    store = fleet.agent(INVOICE3)
    with pytest.raises(ConfigError) as raised:
        await store.ensure_indexes()
    message = str(raised.value)
    assert "pulling_agent_limit_slot" in message and "\n" not in message
    assert "unset the fleet-wide limits" in message
    assert await fleet.agent(Limits()).ensure_indexes() == [], "without limits: no slot index"
