"""Agents read apart in the queue's head (issue 20), on both stores: an agent with a share
claims from its own slice, falls back to the head when its slice is past the end, and a
document no share covers is still claimed within a bounded number of claims. Over the
wire: agents with their shares never claim a document twice, and their fresh finds carry
the skip (PyMongo command monitoring)."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import AsyncMongoClient

from pulling_agent.queue.model import ClaimKind
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.queue.spread import HEAD_EVERY, WINDOW_BATCHES, Share, Spread, window
from tests.integration.conftest import Recorder
from tests.integration.test_store_contract import Harness, h, now

__all__ = ["h"]  # the both-stores fixture
FRESH = (ClaimKind.FRESH,)


def ranked(n: int, first: int = 0) -> list[dict[str, Any]]:
    """Documents whose claim order is their ``n`` (priority descending)."""
    return [{"status": "pending", "n": i, "priority": 10_000 - i} for i in range(first, n)]


async def test_an_agent_with_a_share_claims_from_its_own_slice(h: Harness) -> None:
    await h.insert(ranked(40))
    h.store.spread = Spread(lambda: Share(1, 3))
    claims = await h.store.claim("b", 5, 30, now(), FRESH)
    assert sorted(c.document["n"] for c in claims) == [10, 11, 12, 13, 14]  # window(5) = 10


async def test_a_slice_past_the_end_of_the_queue_falls_back_to_the_head(h: Harness) -> None:
    await h.insert(ranked(12))
    h.store.spread = Spread(lambda: Share(2, 3))  # would skip 20 of 12
    claims = await h.store.claim("c", 5, 30, now(), FRESH)
    assert sorted(c.document["n"] for c in claims) == [0, 1, 2, 3, 4]


async def test_a_document_no_share_covers_is_claimed_within_a_bound(h: Harness) -> None:
    """The agent meant to read the head is gone: this one's share never covers it, and
    more work keeps coming behind it. It still reads the head every HEAD_EVERY finds."""
    await h.insert([{"status": "pending", "n": -1, "priority": 20_000}])  # the head
    await h.insert(ranked(200))
    h.store.spread = Spread(lambda: Share(1, 2))
    bound = HEAD_EVERY * WINDOW_BATCHES  # claims: the spare serves one claim in two
    claimed: list[int] = []
    for round_ in range(bound):
        claimed += [c.document["n"] for c in await h.store.claim("b", 5, 30, now(), FRESH)]
        await h.insert(ranked(205 + 5 * round_, 200 + 5 * round_))  # keep the queue long
        if -1 in claimed:
            break
    assert -1 in claimed, f"not claimed in {bound} claims"


async def test_agents_with_shares_never_claim_a_document_twice(
    mongo_uri: str, db_name: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    collection = client[db_name]["work"]
    try:
        await collection.insert_many(ranked(600))
        stores = []
        for rank in range(6):
            store = MongoWorkStore(collection)
            store.spread = Spread(lambda r=rank: Share(r, 6))  # type: ignore[misc]
            stores.append(store)
        ids: list[Any] = []
        for _ in range(40):
            batches = await asyncio.gather(
                *(s.claim(f"a{i}", 10, 30, now(), FRESH) for i, s in enumerate(stores))
            )
            ids += [c.doc_id for batch in batches for c in batch]
            if len(ids) >= 600:
                break
        assert len(ids) == len(set(ids)) == 600
    finally:
        await client.drop_database(db_name)
        await client.close()


async def test_a_fresh_find_skips_to_the_agents_slice(mongo_uri: str, db_name: str) -> None:
    recorder = Recorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, tz_aware=True, event_listeners=[recorder]
    )
    collection = client[db_name]["work"]
    try:
        await collection.insert_many(ranked(500))
        recorder.take()
        store = MongoWorkStore(collection)
        store.spread = Spread(lambda: Share(2, 4))
        await store.claim("c", 50, 30, now(), FRESH)
        (name, find), (update_name, _) = recorder.take()
        assert (name, update_name) == ("find", "update")
        assert (find["skip"], find["limit"]) == (2 * window(50), window(50))
        assert find["sort"] == {"priority": -1}
    finally:
        await client.drop_database(db_name)
        await client.close()
