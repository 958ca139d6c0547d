"""queue.limits' pure parts: slot texts, which slot a candidate gets, the filters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pulling_agent.config import load_settings
from pulling_agent.errors import ConfigError
from pulling_agent.queue import limits as limits_module
from pulling_agent.queue.limits import (
    MAX_EXCLUDED,
    Limiter,
    Limits,
    Plan,
    assign,
    exclusion,
    key_text,
    narrowed,
    slot_query,
    typed_index,
)
from pulling_agent.queue.workflow import dep_key
from pulling_agent.worker import Worker
from tests.conftest import make_settings

LIMITS = Limits(fleet={"invoice": 2}, key_field="tenant", key_limit=1)


def doc(i: int, **fields: Any) -> dict[str, Any]:
    return {"_id": i, "status": "pending", **fields}


def test_full_types_narrow_the_type_condition_never_a_nor_through_their_backlog() -> None:
    base = {"status": "pending", "available_at": None}
    assert narrowed(base, "type", []) is base
    assert narrowed(base, "type", ["invoice"]) == {**base, "type": {"$nin": ["invoice"]}}
    routed = {**base, "kind": {"$in": ["invoice", "email", None]}}
    assert narrowed(routed, "kind", ["invoice"]) == {**base, "kind": {"$in": ["email", None]}}
    assert narrowed(routed, "kind", ["invoice", "email"]) == {**base, "kind": {"$in": [None]}}
    only = {**base, "type": {"$in": ["invoice"]}}
    assert narrowed(only, "type", ["invoice"]) is None, "routed to full types only: no read"
    odd = {**base, "type": "invoice", "$nor": [{"x": 1}]}
    assert narrowed(odd, "type", ["invoice"]) == {
        **odd,
        "$nor": [{"x": 1}, {"type": {"$in": ["invoice"]}}],
    }
    limiter = Limiter(LIMITS)
    docs = [doc(i, type="invoice", tenant=t) for i, t in enumerate("abc")]
    limiter.learn(assign([*docs, doc(3, type="email", tenant="a")], LIMITS, {}))
    assert limiter.leave_out(base) == {
        **base,
        "type": {"$nin": ["invoice"]},
        "$nor": [{"tenant": {"$in": ["a"]}}],
    }
    assert limiter.indexes() == typed_index("type") and Limiter().indexes() == {}
    assert typed_index("kind")["pulling_agent_limited_types"].keys[-1] == ("kind", 1)


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "",
        "x" * 10_000,
        "\udcff",
        0,
        -(2**63),
        2**63,
        1.5,
        True,
        None,
        [1],
        {"a": 1},
        b"\x00",
        object(),
    ],
)
def test_every_key_value_has_a_bounded_slot_text(value: Any) -> None:
    text = key_text(value)
    assert isinstance(text, str) and 2 <= len(text) <= 2 + 200
    assert key_text(value) == text, "the same value, the same slot, in every agent"


def test_key_texts_tell_values_and_types_apart() -> None:
    values = ["7", 7, 7.0, True, "x" * 201, "x" * 202, [7], {"v": 7}]
    assert len({key_text(v) for v in values}) == len(values)


def test_a_candidate_takes_the_lowest_free_slot_and_a_full_scope_blocks_it() -> None:
    plan = assign(
        [
            doc(1, type="invoice"),
            doc(2, type="invoice"),
            doc(3, type="invoice"),
            doc(4, type="email"),
        ],
        LIMITS,
        {"t:invoice#0": 99},
    )
    assert [(d["_id"], slots) for d, slots in plan.take] == [
        (1, {"limit_slot": "t:invoice#1"}),
        (4, {}),
    ]
    assert plan.blocked == 2 and list(plan.full) == ["t:invoice"]


def test_a_recovered_document_keeps_its_own_slot() -> None:
    mine = doc(1, type="invoice", limit_slot="t:invoice#1", status="processing")
    plan = assign([doc(2, type="invoice"), mine], LIMITS, {"t:invoice#1": 1})
    assert [(d["_id"], s["limit_slot"]) for d, s in plan.take] == [
        (2, "t:invoice#0"),
        (1, "t:invoice#1"),
    ]


@pytest.mark.parametrize(
    "stale", ["t:invoice#2", "t:invoice#01", "t:invoice#-1", "t:email#0", 5, None]
)
def test_a_slot_the_scope_does_not_own_is_not_kept(stale: Any) -> None:
    """A capacity lowered since the claim, a forged or non-string slot: a fresh one."""
    [(_, slots)] = assign([doc(1, type="invoice", limit_slot=stale)], LIMITS, {}).take
    assert slots == {"limit_slot": "t:invoice#0"}


def test_key_and_type_scopes_both_apply_and_either_blocks() -> None:
    candidates = [
        doc(1, type="invoice", tenant="a"),
        doc(2, type="invoice", tenant="a"),
        doc(3, type="invoice", tenant="b"),
    ]
    plan = assign(candidates, LIMITS, {})
    assert [s for _, s in plan.take] == [
        {"limit_slot": "t:invoice#0", "key_slot": "k:*=s:a#0"},
        {"limit_slot": "t:invoice#1", "key_slot": "k:*=s:b#0"},
    ]
    assert plan.blocked == 1 and list(plan.full) == ["k:*=s:a"]


def test_a_per_type_key_limit_is_its_own_scope() -> None:
    limits = Limits(key_field="tenant", key_limit=2, type_key_limits={"export": 1})
    [export] = limits.scopes_of(doc(1, type="export", tenant="a"))
    [other] = limits.scopes_of(doc(2, type="email", tenant="a"))
    assert (export.name, export.capacity) == ("k:export=s:a", 1)
    assert (other.name, other.capacity) == ("k:*=s:a", 2)
    assert limits.scopes_of(doc(3, type={"$ne": 1}, tenant=None)) == [], "no key, odd type"


def test_the_held_slots_query_is_exact_for_one_slot_and_a_range_for_more() -> None:
    scopes = LIMITS.scopes_of(doc(1, type="invoice", tenant="a")) * 2
    assert slot_query(scopes) == {
        "$or": [
            {"key_slot": {"$in": ["k:*=s:a#0"]}},
            {"limit_slot": {"$gte": "t:invoice#", "$lt": "t:invoice$"}},
        ]
    }
    assert slot_query([]) is None


def test_exclusion_names_values_never_operators_and_is_bounded() -> None:
    plan = assign(
        [doc(i, tenant=v) for i, v in enumerate(["a", "a", {"$gt": ""}, {"$gt": ""}])], LIMITS, {}
    )
    assert exclusion(plan.full.values(), LIMITS) == [{"tenant": {"$in": ["a"]}}]
    full_type = assign(
        [doc(1, type="invoice"), doc(2, type="invoice"), doc(3, type="invoice")], LIMITS, {}
    )
    assert exclusion(full_type.full.values(), LIMITS) == [], "types: narrowed(), not $nor"
    many = assign([doc(i, tenant=f"t{i // 2}") for i in range(4 * MAX_EXCLUDED)], LIMITS, {})
    [clause] = exclusion(many.full.values(), LIMITS)
    assert len(clause["tenant"]["$in"]) == MAX_EXCLUDED


def test_a_full_scope_is_excluded_until_it_ages_or_this_agent_frees_a_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    limiter = Limiter(LIMITS)
    taken = limiter.learn(
        assign([doc(1, type="invoice"), doc(2, type="invoice"), doc(3, type="invoice")], LIMITS, {})
    )
    assert limiter.excluded() == (["invoice"], [])
    limiter.freed([1])
    assert limiter.excluded() == ([], []), "a slot of ours came free: look again"
    assert len(taken) == 2, "two documents took the two slots"
    limiter.learn(assign([doc(4, type="invoice")], LIMITS, {"t:invoice#0": 2, "t:invoice#1": 3}))
    assert limiter.excluded() != ([], [])
    clock[0] += limits_module.FULL_MAX_AGE
    assert limiter.excluded() == ([], []), "another agent's slot may have come free: look again"
    assert Plan().take == [] and not Limiter().active


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TYPE_FLEET_CONCURRENCY": "invoice=-1"},
            "TYPE_FLEET_CONCURRENCY=invoice=-1: use a whole number from 0",
        ),
        ({"TYPE_FLEET_CONCURRENCY": "invoice=10001"}, "from 0 to 10000"),
        ({"TYPE_FLEET_CONCURRENCY": "invoice"}, "TYPE_FLEET_CONCURRENCY: entry 1"),
        ({"KEY_CONCURRENCY": "1"}, "KEY_CONCURRENCY needs CONCURRENCY_KEY"),
        ({"TYPE_KEY_CONCURRENCY": "export=1"}, "TYPE_KEY_CONCURRENCY needs CONCURRENCY_KEY"),
        ({"CONCURRENCY_KEY": "tenant", "KEY_CONCURRENCY": "0"}, "KEY_CONCURRENCY is invalid"),
        ({"CONCURRENCY_KEY": "tenant", "TYPE_KEY_CONCURRENCY": "export=0"}, "from 1 to 10000"),
        ({"CONCURRENCY_KEY": "lease"}, "CONCURRENCY_KEY is invalid: must be a top-level field"),
        ({"CONCURRENCY_KEY": "a.b"}, "CONCURRENCY_KEY is invalid"),
        ({"CONCURRENCY_KEY": "$x"}, "CONCURRENCY_KEY is invalid"),
    ],
)
def test_bad_limit_settings_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(
            mongodb_uri="mongodb://127.0.0.1:1/", mongodb_database="d", mongodb_collection="w"
        )
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_limit_settings_parse(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        type_fleet_concurrency="invoice=3, paused=0",
        concurrency_key="tenant",
        key_concurrency=2,
        type_key_concurrency="export=1",
    )
    assert settings.fleet_limits == {"invoice": 3, "paused": 0}
    assert settings.type_key_limits == {"export": 1}
    assert (settings.concurrency_key, settings.key_concurrency) == ("tenant", 2)
    assert make_settings(tmp_path, concurrency_key=" ").concurrency_key is None


@pytest.mark.parametrize(
    "options",
    [
        {"fleet_concurrency": -1},
        {"fleet_concurrency": True},
        {"key_concurrency": 0},
        {"key_concurrency": 10_001},
        {"concurrency": 0},
    ],
)
def test_a_worker_refuses_bad_limits(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be a whole number from"):
        Worker().handler("invoice", **options)


def test_a_worker_keeps_its_fleet_limits() -> None:
    worker = Worker()
    worker.handler("export", fleet_concurrency=3, key_concurrency=1)(lambda d: None)
    assert (worker.fleet_concurrency, worker.key_concurrency) == ({"export": 3}, {"export": 1})
    with pytest.raises(ValueError, match="needs a type"):
        worker.handler(None, fleet_concurrency=1)


def test_limit_metrics_appear_with_limits_and_count_what_waited() -> None:
    from pulling_agent.runtime.metrics import _limit_metrics

    assert list(_limit_metrics({})) == [], "no limits set: no limit metrics"
    families = {
        m.name: m for m in _limit_metrics({"limits": {"waited": 7, "refused": 2, "holding": 3}})
    }
    assert families["pulling_agent_limit_waits"].samples[0].value == 7
    assert families["pulling_agent_limit_refusals"].samples[0].value == 2
    assert families["pulling_agent_limit_slots_held"].samples[0].value == 3


def test_a_limiter_counts_what_waited_and_what_was_refused() -> None:
    limiter = Limiter(LIMITS)
    plan = assign(
        [doc(1, type="invoice"), doc(2, type="invoice"), doc(3, type="invoice")], LIMITS, {}
    )
    limiter.waited += plan.blocked
    taken = limiter.learn(plan)
    limiter.refused([taken[dep_key(1)]])
    snap = limiter.snapshot()
    assert {k: snap[k] for k in ("waited", "refused", "holding")} == {
        "waited": 1,
        "refused": 1,
        "holding": 2,
    }
    assert snap["set"] == {
        "types": [["invoice", 2]],
        "key": "tenant",
        "key_limit": 1,
        "type_key": [],
    }, "what it claims under, published for doctor and the console (queue.occupancy)"
    assert limiter.excluded() == (["invoice"], []), "a refused slot's scope is full"


def test_a_refusal_names_only_the_slot_the_server_says_is_held() -> None:
    from pymongo.errors import WriteError

    slots = {"limit_slot": "t:invoice#0", "key_slot": "k:*=s:zeta#0"}
    said = {"code": 11000, "keyValue": {"limit_slot": "t:invoice#0"}}
    assert limits_module.conflicting(slots, WriteError("E11000", 11000, said)) == {
        "limit_slot": "t:invoice#0"
    }
    unsaid: list[Any] = [
        None,
        {},
        {"keyValue": "limit_slot"},
        {"keyValue": {"limit_slot": "t:invoice#1"}},  # not a slot this claim tried
        {"keyValue": {"$where": [1]}},
    ]
    for details in unsaid:
        assert limits_module.conflicting(slots, WriteError("E11000", 11000, details)) == slots
    assert limits_module.conflicting(slots, ValueError("no details")) == slots


async def test_a_limiter_does_not_try_a_scope_it_knows_full_but_recovers_its_holder() -> None:
    limiter = Limiter(Limits(fleet={"invoice": 1}))
    limiter.learn(assign([doc(1, type="invoice"), doc(2, type="invoice")], limiter.limits, {}))
    assert limiter.excluded() == (["invoice"], [])
    collection: Any = None  # scopes of one slot: nothing is read
    taken, blocked = await limiter.plan(collection, [doc(3, type="invoice"), doc(4, type="mail")])
    assert blocked == 1 and dep_key(3) not in taken, "a doomed write is not sent"
    assert taken[dep_key(4)] == {}
    # a dead agent's document holding the slot is recovered with it, full scope or not
    recovering = doc(1, type="invoice", limit_slot="t:invoice#0")
    taken, blocked = await limiter.plan(collection, [recovering])
    assert blocked == 0 and taken[dep_key(1)] == {"limit_slot": "t:invoice#0"}
