"""The pure parts of queue.occupancy: which strings are slots, which holders are stale, and
how held slots are tallied against the limits this environment sets (or does not)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pulling_agent.queue.limits import Limits, key_text
from pulling_agent.queue.occupancy import Usage, fleet_types, scope_of, stale_holder, tally

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("slot", "scope"),
    [
        ("t:invoice#2", "t:invoice"),
        ("k:*=s:a#b#0", "k:*=s:a#b"),  # a key value may hold "#": the number is the last part
        ("t:invoice", None),
        ("t:invoice#", None),
        ("t:invoice#-1", None),
        ("#0", None),
        ("t:x#" + "9" * 400, None),  # longer than any slot of ours
        (None, None),
        (3, None),
        (["t:a#0"], None),
        ({"$gt": ""}, None),
    ],
)
def test_only_slot_strings_name_a_scope(slot: Any, scope: str | None) -> None:
    assert scope_of(slot) == scope


def lease(expired_for: float) -> dict[str, Any]:
    return {"owner": "a1", "expires_at": NOW - timedelta(seconds=expired_for)}


def test_a_holder_is_stale_past_a_lease_after_its_lease_or_when_not_processing() -> None:
    processing = {"_id": 1, "status": "processing"}
    assert stale_holder("t:a#0", {**processing, "lease": lease(-30)}, NOW, 60) is None
    assert stale_holder("t:a#0", {**processing, "lease": lease(59)}, NOW, 60) is None
    dead = stale_holder("t:a#0", {**processing, "lease": lease(61)}, NOW, 60)
    assert dead is not None and dead.expired_for == 61 and "'a1'" in dead.reason
    # a lease of the wrong shape is the sweep's (and documents.diagnose's) to explain
    bad: Any
    for bad in (None, "soon", {"expires_at": "soon"}, {"expires_at": 5}, []):
        assert stale_holder("t:a#0", {**processing, "lease": bad}, NOW, 60) is None
    for status in ("pending", "processed", None, {"$x": 1}):
        stray = stale_holder("t:a#0", {"_id": 2, "status": status}, NOW, 60)
        assert stray is not None and "not processing" in stray.reason
        assert "\n" not in stray.reason


def test_held_slots_are_tallied_per_scope_with_the_capacity_known_here() -> None:
    limits = Limits(fleet={"invoice": 3}, key_field="tenant", key_limit=2)
    hostile = "\x1b[2J<b>\u202e"
    holders = [
        ("t:invoice#0", {"type": "invoice"}),
        ("t:invoice#2", {"type": "invoice"}),
        (f"k:*={key_text('acme')}#0", {"tenant": "acme"}),
        (f"k:*={key_text('acme')}#1", {"tenant": "acme"}),
        (f"k:*={key_text(hostile)}#0", {"tenant": hostile}),
        ("k:mail=s:z#0", {"type": "mail", "tenant": "z"}),  # another agent's per-type limit
        ("junk", {}),
    ]
    running, keys = tally(holders, limits)
    assert running == {
        "t:invoice": 2,
        "k:*=s:acme": 2,
        f"k:*={key_text(hostile)}": 1,
        "k:mail=s:z": 1,
    }
    assert keys["k:*=s:acme"] == Usage("tenant='acme'", 0, 2)
    assert keys["k:mail=s:z"].limit is None
    shown = keys[f"k:*={key_text(hostile)}"].shown
    assert "\x1b" not in shown and "\u202e" not in shown


def entry(
    agent_id: Any, types: Any = None, published: Any = "none", **extra: Any
) -> dict[str, Any]:
    limits = {} if published == "none" else {"limits": {"set": {"types": published}}}
    return {"_id": agent_id, "types": types, **limits, **extra}


def test_the_fleets_type_limits_are_what_every_agent_claiming_the_type_says() -> None:
    agreeing = [
        entry("a1", published=[["invoice", 3], ["hold", 0]]),
        entry("a2", published=[["invoice", 3], ["hold", 0]]),
    ]
    assert fleet_types(agreeing).agreed == {"invoice": 3, "hold": 0}
    assert fleet_types(agreeing).disagreements == []
    # an agent routed to other types does not count; one claiming the type without a limit does
    routed = [*agreeing, entry("mail-only", types=["mail"])]
    assert fleet_types(routed).agreed == {"invoice": 3, "hold": 0}
    unlimited = [*agreeing, entry("\x1b[2Jrogue")]
    found = fleet_types(unlimited)
    assert found.agreed == {}
    assert len(found.disagreements) == 2
    line = next(d for d in found.disagreements if "'invoice'" in d)
    assert "3 on a1, a2; no limit on" in line and "\x1b" not in line
    other = [*agreeing, entry("a3", published=[["invoice", 5], ["hold", 0]])]
    assert fleet_types(other).agreed == {"hold": 0}
    assert "3 on a1, a2; 5 on a3" in fleet_types(other).disagreements[0]


@pytest.mark.parametrize(
    "published",
    [
        None,
        "invoice=3",
        {"invoice": 3},
        [["invoice"]],
        [["invoice", "3"]],
        [["invoice", True]],
        [["invoice", -1]],
        [["invoice", 10**30]],
        [[{"$gt": ""}, 3]],
        [["invoice", 3, 4]],
    ],
)
def test_hostile_published_limits_are_ignored(published: Any) -> None:
    assert fleet_types([entry("a1", published=published)]).agreed == {}
