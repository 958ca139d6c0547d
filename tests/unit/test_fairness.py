"""queue.fairness' pure parts: where the walk goes on from, and its filters."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bson import Binary, ObjectId

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
    assert walk.on_from(MATCH) == {**MATCH, "priority": None, "tenant": {"$gt": "b"}}
    assert walk.next_group(MATCH) is None, "no other type of key seen: back to the top"
    walk.wrapped()
    assert walk.on_from(MATCH) is None


def test_a_document_read_twice_is_taken_once() -> None:
    walk = Walk("tenant")
    assert [d["_id"] for d in walk.take([doc(1, "a"), doc(1, "a"), doc(2, "a")], 5)] == [1, 2]


def test_when_one_types_keys_end_the_walk_goes_on_to_the_next_type_seen() -> None:
    walk = Walk("tenant")
    walk.learn([doc(1, 7), doc(2, "s"), doc(3, ObjectId("0123456789ab0123456789ab")), doc(4)])
    walk.take([doc(5, 9)], 1)
    assert walk.next_group(MATCH) == {**MATCH, "priority": None, "tenant": {"$gte": ""}}
    walk.take([doc(6, "zzz")], 1)
    assert walk.next_group(MATCH) == {
        **MATCH,
        "priority": None,
        "tenant": {"$gte": ObjectId("000000000000000000000000")},
    }


@pytest.mark.parametrize("key", [{"o": 1}, [1, 2], b"\x00", float("nan")])
def test_a_key_no_filter_can_go_on_from_moves_the_walk_past_its_type(key: Any) -> None:
    walk = Walk("tenant")
    walk.learn([doc(1, True)])
    walk.take([doc(2, key)], 1)
    assert walk.on_from(MATCH) is None, "no comparison with the value"
    assert walk.next_group(MATCH) == {**MATCH, "priority": None, "tenant": {"$gte": False}}


def test_after_the_keyless_documents_come_the_keys() -> None:
    walk = Walk("tenant")
    walk.learn([doc(1, "a")])
    walk.take([doc(2, None, priority=3)], 1)
    assert walk.on_from(MATCH) is None
    assert walk.next_group(MATCH) == {**MATCH, "priority": 3, "tenant": {"$gte": ""}}


def test_a_match_on_the_key_field_is_kept_whole() -> None:
    walk = Walk("tenant")
    walk.take([doc(1, "a")], 1)
    match = {**MATCH, "tenant": {"$exists": True}}
    query = walk.on_from(match)
    assert query is not None and query["$and"][0] == match


def test_each_round_looks_for_one_type_not_seen_each_at_most_every_half_minute() -> None:
    walk = Walk("tenant")
    walk.learn([doc(1, 5), doc(2, "s")])
    probes = [walk.probe(MATCH) for _ in range(3)]
    assert [p["tenant"] for p in probes if p is not None] == [
        {"$gte": {}},
        {"$gte": Binary(b"")},  # arrays have no least value: no probe (a $type may scan)
        {"$gte": ObjectId("0" * 24)},
    ]
    while walk.probe(MATCH) is not None:
        pass  # every group looked for once: none again for PROBE_AGAIN seconds


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
