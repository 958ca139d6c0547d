"""Fair claiming (queue.fairness), one contract for both stores: with a key field, fresh
work is claimed in turns between key values instead of from the queue's head."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from pulling_agent.queue import fairness
from pulling_agent.queue.fairness import Walk
from pulling_agent.queue.limits import Limiter, Limits
from pulling_agent.queue.model import ClaimKind, Completion, OutcomeKind
from tests.deviations import NO_TYPE_BRACKETING, nx_deviation
from tests.integration.test_limits_contract import Fleet, fleet

__all__ = ["fleet"]

FRESH = (ClaimKind.FRESH,)
T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def tenant_docs(tenant: Any, n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"status": "pending", "tenant": tenant, "n": i, **fields} for i in range(n)]


def walker(fleet: Fleet, limits: Limits | None = None) -> Any:
    store = fleet.agent(limits or Limits())
    store.walk = Walk("tenant")  # type: ignore[attr-defined]
    return store


async def drain(store: Any, limit: int, rounds: int = 500) -> list[dict[str, Any]]:
    """Claim ``limit`` at a time, finishing each batch, until nothing is left."""
    order: list[dict[str, Any]] = []
    for _ in range(rounds):
        claims = await store.claim("a1", limit, 30, T, FRESH)
        if not claims:
            return order
        order += [c.document for c in claims]
        done = [Completion(c.doc_id, c.token, OutcomeKind.PROCESSED) for c in claims]
        assert await store.complete(done, T) == len(done)
    raise AssertionError("the queue did not drain")


async def test_a_burst_at_the_head_does_not_make_the_other_tenants_wait(fleet: Fleet) -> None:
    store = walker(fleet)
    await store.ensure_indexes()
    await fleet.insert(tenant_docs("m-big", 60))
    for tenant in ("a", "c", "x", "z"):
        await fleet.insert(tenant_docs(tenant, 4))
    order = await drain(store, 2)
    tenants = [d["tenant"] for d in order]
    small_done = max(i for i, t in enumerate(tenants) if t != "m-big")
    # two turns of 2 for each small tenant: the big one had at most as many turns meanwhile
    assert Counter(tenants[: small_done + 1])["m-big"] <= 3 * 2
    for tenant in set(tenants):  # each tenant's own documents in arrival order
        ns = [d["n"] for d in order if d["tenant"] == tenant]
        assert ns == sorted(ns)
    assert len(order) == 76


async def test_priority_comes_before_the_turns(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fairness, "LEVEL_MAX_AGE", 0.0)  # the head is looked at every claim
    store = walker(fleet)
    await store.ensure_indexes()
    await fleet.insert(tenant_docs("a", 5) + tenant_docs("b", 5))
    first = await store.claim("a1", 2, 30, T, FRESH)
    assert [c.document["tenant"] for c in first] == ["a", "a"]
    await fleet.insert(tenant_docs("zz", 1, priority=9))
    [urgent, *_] = await store.claim("a1", 2, 30, T, FRESH)
    assert urgent.document["tenant"] == "zz", "a higher priority is walked at once"


async def every_kind_gets_a_turn(fleet: Fleet, values: list[Any]) -> None:
    store = walker(fleet)
    await store.ensure_indexes()
    for value in values:
        await fleet.insert(tenant_docs(value, 20))
    await fleet.insert([{"status": "pending", "n": 99}])  # no key field at all
    claims = []
    for _ in range(2 * len(values) + 2):  # a turn each, and a look for each type
        claims += await store.claim("a1", 3, 30, T, FRESH)
    seen = {repr(c.document.get("tenant")) for c in claims}
    assert seen == {repr(v) for v in values} | {"None"}, "the keyless one too"


async def test_string_keys_and_keyless_documents_take_turns(fleet: Fleet) -> None:
    await every_kind_gets_a_turn(fleet, ["a", "b", "c", "d"])


@nx_deviation(NO_TYPE_BRACKETING)
async def test_every_type_of_key_value_gets_its_turn(fleet: Fleet) -> None:
    """Keyless documents, numbers, strings, sub-documents, arrays, ObjectIds, booleans,
    dates: each kind with a backlog, none waits for another's to drain (the walk goes on
    from one type group to the next by range, which needs MongoDB's type bracketing)."""
    values = [None, 5, "s", {"o": 1}, [1, 2], ObjectId("0123456789ab0123456789ab"), True, T]
    await every_kind_gets_a_turn(fleet, values)


async def test_fair_claiming_obeys_the_limits(fleet: Fleet) -> None:
    store = walker(fleet, Limits(key_field="tenant", key_limit=1))
    await store.ensure_indexes()
    for tenant in ("a", "b", "c"):
        await fleet.insert(tenant_docs(tenant, 5))
    claims = await store.claim("a1", 10, 30, T, FRESH)
    assert sorted(c.document["tenant"] for c in claims) == ["a", "b", "c"]


async def test_without_a_key_nothing_changes(fleet: Fleet) -> None:
    store = fleet.agent(Limits())
    assert not store.walk.active and not Limiter().active  # type: ignore[attr-defined]
    await fleet.insert(tenant_docs("big", 6) + tenant_docs("a", 2))
    claims = await store.claim("a1", 6, 30, T, FRESH)
    assert [c.document["tenant"] for c in claims] == ["big"] * 6, "the head, in arrival order"
