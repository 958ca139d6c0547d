"""queue.fairness' pure parts: where the walk goes on from, and its filters."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pulling_agent.queue.fairness import Walk, key_order

MATCH = {"status": "pending", "available_at": None}
LATER_THAN_STRINGS = [
    "object",
    "array",
    "binData",
    "objectId",
    "bool",
    "date",
    "timestamp",
    "regex",
]


def doc(i: int, tenant: Any = None, **fields: Any) -> dict[str, Any]:
    return {"_id": i, "tenant": tenant, **fields}


def test_a_walk_starts_at_the_top_and_goes_on_from_the_last_key_taken() -> None:
    walk = Walk("tenant")
    assert walk.on_from(MATCH) is None, "the first read is the top"
    taken = walk.take([doc(1, "a"), doc(2, "a"), doc(3, "b"), doc(4, "c")], 3)
    assert [d["_id"] for d in taken] == [1, 2, 3]
    assert walk.on_from(MATCH) == {
        **MATCH,
        "priority": None,
        "$or": [{"tenant": {"$gt": "b"}}, *({"tenant": {"$type": t}} for t in LATER_THAN_STRINGS)],
    }
    walk.wrapped()
    assert walk.on_from(MATCH) is None


def test_a_document_read_twice_is_taken_once() -> None:
    walk = Walk("tenant")
    assert [d["_id"] for d in walk.take([doc(1, "a"), doc(1, "a"), doc(2, "a")], 5)] == [1, 2]


@pytest.mark.parametrize("key", [{"o": 1}, [1, 2], b"\x00", float("nan")])
def test_a_key_no_filter_can_go_on_from_moves_the_walk_past_its_type(key: Any) -> None:
    walk = Walk("tenant")
    walk.take([doc(1, key)], 1)
    query = walk.on_from(MATCH)
    assert query is not None
    clauses = query["$or"]
    assert all(list(c["tenant"]) == ["$type"] for c in clauses), "no comparison with the value"


def test_after_the_keyless_documents_come_every_key() -> None:
    walk = Walk("tenant")
    walk.take([doc(1, None, priority=3)], 1)
    assert walk.on_from(MATCH) == {**MATCH, "priority": 3, "tenant": {"$nin": [None]}}


def test_a_match_with_its_own_or_is_kept_whole() -> None:
    walk = Walk("tenant")
    walk.take([doc(1, "a")], 1)
    match = {**MATCH, "$or": [{"type": "x"}]}
    query = walk.on_from(match)
    assert query is not None and query["$and"][0] == match


def test_a_higher_priority_at_the_head_restarts_the_walk_at_its_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    walk = Walk("tenant")
    walk.take([doc(1, "a", priority=1)], 1)
    assert walk.level_due()
    walk.head([doc(2, "z", priority=1)])
    assert walk.on_from(MATCH) is not None and not walk.level_due(), "same level: go on"
    clock[0] += 1.0
    walk.head([doc(3, "z", priority=5)])
    assert walk.on_from(MATCH) is None, "a higher level: walked from its top"


def test_the_memory_order_of_keys_follows_bsons_type_order() -> None:
    values: list[Any] = [None, float("nan"), -1, 2.5, "", "b", {"a": 1}, [0], b"", True]
    assert sorted(values, key=key_order) == values
