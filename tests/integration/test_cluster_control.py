"""Cluster control over the wire: the control document, its audit trail, and agents that
follow it by polling and by change stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from pymongo import AsyncMongoClient

from pulling_agent.config import ChangeStreams
from pulling_agent.control.cluster import CONTROL_ID, ClusterCommand
from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.control.follower import ClusterFollower
from pulling_agent.control.requests import Source
from pulling_agent.queue.database import supports_change_streams
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.runtime.agent import Agent
from pulling_agent.runtime.state import AgentState
from tests.conftest import async_wait_until, make_settings

Client = AsyncMongoClient[dict[str, Any]]
NOW = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
async def control(client: Client, db_name: str) -> AsyncIterator[ClusterControlStore]:
    yield ClusterControlStore(client[db_name]["agent_control"])
    await client.drop_database(db_name)


async def test_every_command_gets_the_next_version_and_an_audit_entry(
    control: ClusterControlStore,
) -> None:
    states = await asyncio.gather(
        *(control.issue(ClusterCommand.PAUSE, f"r{i}", "ops", "", NOW) for i in range(8))
    )
    assert sorted(s.version for s in states) == list(range(1, 9)), "versions are unique"
    history = await control.history(20)
    assert [h["version"] for h in history] == list(range(8, 0, -1))
    assert {h["updated_by"] for h in history} == {"ops"}
    # the seed's query shows the current document first, then the history
    seed_view = await control.collection.find().sort({"version": -1}).limit(3).to_list()
    assert [d["version"] for d in seed_view][:1] == [8]
    assert {d["_id"] for d in seed_view[:2]} >= {CONTROL_ID}


async def test_read_returns_the_latest_command(control: ClusterControlStore) -> None:
    assert await control.read() is None
    await control.issue(ClusterCommand.PAUSE, "maintenance", "ops", "admin", NOW)
    state = await control.issue(ClusterCommand.RESUME, "done", "ci", "", NOW)
    read = await control.read()
    assert read is not None
    assert (read.command, read.version, read.reason, read.updated_by) == ("resume", 2, "done", "ci")
    assert read.version == state.version


class Fleet:
    """An agent (in-memory queue) following the real control document."""

    def __init__(self, agent: Agent, follower: ClusterFollower, task: asyncio.Task[int]) -> None:
        self.agent = agent
        self.follower = follower
        self.task = task


@pytest.fixture(params=[ChangeStreams.OFF, ChangeStreams.ALWAYS], ids=["polling", "change_streams"])
async def follow(
    request: pytest.FixtureRequest,
    control: ClusterControlStore,
    client: Client,
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Fleet]]:
    started: list[Fleet] = []

    def _start(store: MemoryWorkStore | None = None) -> Fleet:
        store = store or MemoryWorkStore()
        settings = make_settings(tmp_path / f"agent{len(started)}")
        agent = Agent(settings, store, _noop)
        follower = ClusterFollower(control, client, request.param, 0.05, agent, "test-agent")
        agent.companions["cluster-follower"] = follower
        fleet = Fleet(agent, follower, asyncio.create_task(agent.run(install_signals=False)))
        started.append(fleet)
        return fleet

    yield _start
    for fleet in started:
        if not fleet.task.done():
            fleet.agent.request_shutdown("test over")
            await asyncio.wait_for(fleet.task, 30)


async def _noop(doc: dict[str, Any]) -> None:
    return None


async def test_agents_follow_pause_and_resume(
    follow: Callable[..., Fleet], control: ClusterControlStore
) -> None:
    fleets = [follow(), follow()]

    def all_in(state: AgentState) -> bool:
        return all(f.agent.state is state for f in fleets)

    await async_wait_until(lambda: all_in(AgentState.RUNNING))
    await control.issue(ClusterCommand.PAUSE, "maintenance", "ops", "", NOW)
    await async_wait_until(lambda: all_in(AgentState.PAUSED))
    for fleet in fleets:
        [holder] = fleet.agent.pauses.holders()
        assert (holder.source, holder.reason, holder.by) == (Source.CLUSTER, "maintenance", "ops")
    await control.issue(ClusterCommand.RESUME, "done", "ops", "", NOW)
    await async_wait_until(lambda: all_in(AgentState.RUNNING))
    assert [f.follower.version_seen for f in fleets] == [2, 2]


async def test_agent_started_while_paused_starts_paused_before_any_claim(
    follow: Callable[..., Fleet], control: ClusterControlStore
) -> None:
    await control.issue(ClusterCommand.PAUSE, "standing", "ops", "", NOW)
    store = MemoryWorkStore([{"status": "pending"}])
    fleet = follow(store)
    await async_wait_until(lambda: fleet.agent.state is AgentState.PAUSED)
    assert "claim" not in store.calls
    assert store.get(1)["status"] == "pending"


async def test_shutdown_stops_running_agents_and_holds_later_ones_paused(
    follow: Callable[..., Fleet], control: ClusterControlStore
) -> None:
    running = follow()
    await async_wait_until(lambda: running.agent.state is AgentState.RUNNING)
    await control.issue(ClusterCommand.SHUTDOWN, "deploy", "ops", "", NOW)
    assert await asyncio.wait_for(running.task, 30) == 0
    late_store = MemoryWorkStore([{"status": "pending"}])
    late = follow(late_store)
    await async_wait_until(lambda: late.agent.state is AgentState.PAUSED)
    [holder] = late.agent.pauses.holders()
    assert "shutdown" in holder.reason
    assert "resume" in holder.reason
    assert "claim" not in late_store.calls
    await control.issue(ClusterCommand.RESUME, "deploy done", "ops", "", NOW)
    await async_wait_until(lambda: late_store.get(1)["status"] == "processed")


async def test_bad_command_is_ignored_and_a_manual_version_bump_is_reapplied(
    follow: Callable[..., Fleet], control: ClusterControlStore
) -> None:
    fleet = follow()
    await async_wait_until(lambda: fleet.agent.state is AgentState.RUNNING)
    await control.collection.update_one(
        {"_id": CONTROL_ID}, {"$set": {"command": "pasue"}, "$inc": {"version": 1}}, upsert=True
    )
    await async_wait_until(lambda: fleet.follower.version_seen == 1)
    assert fleet.agent.state is AgentState.RUNNING, "a typo must not change anything"
    await control.issue(ClusterCommand.PAUSE, "p", "ops", "", NOW)
    await async_wait_until(lambda: fleet.agent.state is AgentState.PAUSED)
    fleet.agent.request_resume(Source.CLUSTER)  # as if the cluster's pause had been lost
    await async_wait_until(lambda: fleet.agent.state is AgentState.RUNNING)
    await control.collection.update_one({"_id": CONTROL_ID}, {"$inc": {"version": 1}})
    await async_wait_until(lambda: fleet.agent.state is AgentState.PAUSED, what="re-applied")
    assert fleet.follower.version_seen == 3


@pytest.mark.parametrize(
    "tamper",
    ["delete", "string-version", "no-version", "lower-version"],
)
async def test_versions_only_go_up_whatever_was_done_to_the_document(
    control: ClusterControlStore, tamper: str
) -> None:
    """Before: a document deleted and recreated, or with a version that is not an integer,
    restarted at 1, and agents that had seen 5 ignored every command silently."""
    for i in range(5):
        await control.issue(ClusterCommand.PAUSE, f"r{i}", "ops", "", NOW)
    changes = {
        "delete": None,
        "string-version": {"$set": {"version": "5"}},
        "no-version": {"$unset": {"version": ""}},
        "lower-version": {"$set": {"version": 2}},
    }[tamper]
    if changes is None:
        await control.collection.delete_one({"_id": CONTROL_ID})
    else:
        await control.collection.update_one({"_id": CONTROL_ID}, changes)
    state = await control.issue(ClusterCommand.RESUME, "after", "ops", "", NOW)
    assert state.version == 6
    read = await control.read()
    assert read is not None and (read.command, read.version) == ("resume", 6)


async def test_an_agent_ignores_a_version_that_does_not_go_up_and_says_why(
    follow: Callable[..., Fleet], control: ClusterControlStore
) -> None:
    fleet = follow()
    await async_wait_until(lambda: fleet.agent.state is AgentState.RUNNING)
    for _ in range(3):
        await control.issue(ClusterCommand.RESUME, "noop", "ops", "", NOW)
    await async_wait_until(lambda: fleet.follower.version_seen == 3)
    with structlog.testing.capture_logs() as logs:
        await control.collection.replace_one(
            {"_id": CONTROL_ID}, {"command": "pause", "version": 1, "reason": "by hand"}
        )
        await async_wait_until(
            lambda: any(e.get("action") == "cluster.ignored" for e in logs), what="logged"
        )
        for _ in range(5):  # polled again and again: logged once
            await asyncio.sleep(0.06)
    ignored = [e for e in logs if e.get("action") == "cluster.ignored"]
    assert len(ignored) == 1
    assert (ignored[0]["version"], ignored[0]["version_applied"]) == (1, 3)
    assert fleet.agent.state is AgentState.RUNNING
    state = await control.issue(ClusterCommand.PAUSE, "properly", "ops", "", NOW)
    assert state.version == 4
    await async_wait_until(lambda: fleet.agent.state is AgentState.PAUSED)


async def test_change_streams_asked_for_on_a_standalone_are_said_unavailable(
    control: ClusterControlStore, client: Client
) -> None:
    """Seed 004's line, at WARNING, when ENABLE_CHANGE_STREAMS=true meets a server without
    them (a standalone: nx-27017 says it is one); on a replica set the follower watches and
    says nothing of it."""
    follower = ClusterFollower(control, client, ChangeStreams.AUTO, 0.05, _Quiet(), "a")
    with structlog.testing.capture_logs() as logs:
        await follower.start()
    said = [e for e in logs if e.get("action") == "cluster.change_streams_unavailable"]
    if await supports_change_streams(client):
        assert said == [] and follower.watch_mode == "change_streams"
        return
    [warning] = said
    assert warning["log_level"] == "warning" and follower.watch_mode == "polling"
    assert warning["event"] == (
        "MongoDB Change Streams not available: Replica set required. Using polling fallback."
    )


class _Quiet:
    def request_pause(self, source: Source, reason: str, by: str) -> None:
        return None

    def request_resume(self, source: Source) -> None:
        return None

    def request_shutdown(self, reason: str) -> None:
        return None

    def notify_changed(self) -> None:
        return None
