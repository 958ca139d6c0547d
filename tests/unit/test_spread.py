"""Where each agent reads fresh work (pure): its slice of the head by rank, the head every
HEAD_EVERY finds, and its rank among the running agents of its types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pulling_agent.fleet.registry import share_of
from pulling_agent.queue.spread import HEAD_EVERY, Share, Spread, window


def test_a_lone_agent_or_one_without_a_share_always_reads_the_head() -> None:
    assert [Spread().offset(200) for _ in range(20)] == [0] * 20
    alone = Spread(lambda: Share(0, 1))
    assert [alone.offset(200) for _ in range(20)] == [0] * 20


def test_rank_r_reads_r_windows_in_and_the_head_every_head_every_finds() -> None:
    spread = Spread(lambda: Share(3, 16))
    offsets = [spread.offset(window(100)) for _ in range(3 * HEAD_EVERY)]
    assert offsets.count(0) == 3, "the head, once every HEAD_EVERY finds"
    assert [i + 1 for i, o in enumerate(offsets) if o == 0] == [8, 16, 24]
    assert set(offsets) == {0, 600}


def test_a_nonsense_share_reads_the_head() -> None:
    for share in (Share(5, 3), Share(-1, 4), Share(0, 0)):
        assert Spread(lambda s=share: s).offset(200) == 0  # type: ignore[misc]


def test_the_share_counts_running_agents_of_the_same_types_only() -> None:
    now = datetime.now(UTC)
    live: list[dict[str, Any]] = [
        {"_id": "b", "state": "running", "types": None, "heartbeat_at": now},
        {"_id": "c", "state": "paused", "types": None, "heartbeat_at": now},
        {"_id": "d", "state": "running", "types": ["email"], "heartbeat_at": now},
        {"_id": "a", "state": "running", "types": None, "heartbeat_at": now},
    ]
    assert share_of("b", None, live) == Share(1, 2)
    assert share_of("d", ["email"], live) == Share(0, 1)
    assert share_of("e", None, live) == Share(2, 3), "not registered yet: counted anyway"
