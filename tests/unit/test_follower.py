"""The cluster follower's decisions and its fallback when the change stream breaks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pymongo.errors import PyMongoError

from pulling_agent.config import ChangeStreams
from pulling_agent.control.cluster import Action, ControlState, decide
from pulling_agent.control.follower import ClusterFollower, WatchMode
from pulling_agent.control.requests import Source
from tests.conftest import async_wait_until

T = datetime(2026, 1, 1, tzinfo=UTC)


def state(command: str, version: int, reason: str = "r") -> ControlState:
    return ControlState(command, version, T, reason, "ops")


@pytest.mark.parametrize(
    ("command", "at_startup", "action"),
    [
        ("pause", False, Action.HOLD_PAUSE),
        ("PAUSE ", True, Action.HOLD_PAUSE),
        ("resume", False, Action.RELEASE),
        ("shutdown", False, Action.SHUTDOWN),
        ("shutdown", True, Action.HOLD_PAUSE),
        ("pasue", False, Action.IGNORE),
        ("", True, Action.IGNORE),
    ],
)
def test_decide(command: str, at_startup: bool, action: Action) -> None:
    assert decide(state(command, 3), at_startup).action is action


def test_standing_shutdown_explains_how_to_get_out() -> None:
    decision = decide(state("shutdown", 7), at_startup=True)
    assert decision.reason == "cluster shutdown v7 is standing; resume the cluster to process"


def test_documents_with_garbage_fields_do_not_crash() -> None:
    parsed = ControlState.from_document({"command": 42, "version": "seven", "reason": None})
    assert (parsed.command, parsed.version, parsed.reason) == ("42", 0, "")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def request_pause(self, source: Source, reason: str, by: str) -> None:
        self.calls.append(("pause", reason))

    def request_resume(self, source: Source) -> None:
        self.calls.append(("resume", None))

    def request_shutdown(self, reason: str) -> None:
        self.calls.append(("shutdown", reason))

    def notify_changed(self) -> None:
        pass


class BrokenStreams:
    async def watch(self, *args: Any, **kwargs: Any) -> Any:
        raise PyMongoError("change stream unavailable")


class Store:
    def __init__(self) -> None:
        self.collection = BrokenStreams()
        self.current: ControlState | None = None

    async def read(self) -> ControlState | None:
        return self.current


async def test_a_broken_change_stream_falls_back_to_polling() -> None:
    store, agent = Store(), Recorder()
    follower = ClusterFollower(
        cast(Any, store), cast(Any, None), ChangeStreams.ALWAYS, 0.01, agent, "a1"
    )
    await follower.start()
    assert follower.watch_mode == WatchMode.CHANGE_STREAMS
    task = asyncio.create_task(follower.run())
    try:
        store.current = state("pause", 1, "maintenance")
        await async_wait_until(lambda: agent.calls == [("pause", "maintenance")])
        assert not follower.stream_healthy
        store.current = state("resume", 2)
        await async_wait_until(lambda: agent.calls[-1] == ("resume", None))
        assert follower.version_seen == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_each_version_is_applied_once() -> None:
    agent = Recorder()
    follower = ClusterFollower(
        cast(Any, Store()), cast(Any, None), ChangeStreams.OFF, 1, agent, "a1"
    )
    follower.apply(state("shutdown", 4))
    follower.apply(state("shutdown", 4))
    follower.apply(state("pause", 3))  # older: ignored
    assert agent.calls == [("shutdown", "cluster shutdown v4: r")]
