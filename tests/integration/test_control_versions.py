"""Control versions that cannot wedge the fleet, and acknowledgements that mean it: over a
real agent node (in process) following the control document by polling.

A version is usable from 1 to MAX_VERSION; anything else is logged once and never applied;
writers issue above every usable version they know of, agents' reported ones included; an
ack means the agent applied the version, an agent that ignored it is reported as such."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import Node
from pulling_agent.control.cluster import CONTROL_ID
from pulling_agent.runtime.state import AgentState
from tests.conftest import async_wait_until, invoke
from tests.integration.conftest import TOKEN

Client = AsyncMongoClient[dict[str, Any]]
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def count_reads(node: Node) -> Callable[[], int]:
    """Count the follower's reads of the control document (each poll is one)."""
    reads = 0
    read = node.cluster.control.read

    async def counted() -> Any:
        nonlocal reads
        reads += 1
        return await read()

    node.cluster.control.read = counted  # type: ignore[method-assign]
    return lambda: reads


def collection(node: Node, client: Client, name: str) -> Any:
    return client[node.agent.settings.mongodb_database][name]


async def test_a_command_goes_above_every_version_an_agent_applied(
    node: Node, client: Client, api: httpx.AsyncClient
) -> None:
    """Before: with the document's version made unusable by hand and no audit entry above,
    writers issued 1 to an agent that had applied 10; the agent ignored it, and the API
    said "acknowledged" because 10 >= 1."""
    control = collection(node, client, "agent_control")
    await control.insert_one({"_id": CONTROL_ID, "command": "resume", "version": 10})
    await async_wait_until(lambda: node.follower is not None and node.follower.version_seen == 10)
    await control.update_one({"_id": CONTROL_ID}, {"$set": {"version": "ten"}})
    answer = await api.post("/api/cluster/pause", params={"wait": 5}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["control"]["version"] == 11
    assert body["acks"]["acknowledged"] == [node.agent.settings.agent_id]
    await async_wait_until(lambda: node.agent.state is AgentState.PAUSED, what="really paused")


@pytest.mark.parametrize(
    ("version", "says"),
    [
        (2**53 - 1, "outside 1..2147483647"),
        (-3, "outside 1..2147483647"),
        (2.5, "not a whole number"),
        ("7", "its version is str"),
        (None, "it has no version"),
    ],
    ids=["2**53-1", "negative", "fraction", "string", "missing"],
)
async def test_a_malformed_version_is_logged_once_and_never_applied(
    node: Node, client: Client, api: httpx.AsyncClient, version: Any, says: str
) -> None:
    control = collection(node, client, "agent_control")
    doc: dict[str, Any] = {"_id": CONTROL_ID, "command": "pause", "reason": "by hand"}
    if version is not None:
        doc["version"] = version
    polls = count_reads(node)
    with structlog.testing.capture_logs() as logs:
        await control.insert_one(doc)
        await async_wait_until(lambda: polls() >= 5, what="the document polled five times")
    ignored = [e for e in logs if e.get("action") == "cluster.ignored"]
    assert len(ignored) == 1 and says in ignored[0]["reason"], ignored
    assert node.agent.state is AgentState.RUNNING, "never applied"
    registry = collection(node, client, "agent_registry")
    await async_wait_until(
        lambda: _ignored_in_registry(registry, node.agent.settings.agent_id), what="published"
    )
    shown = (await api.get("/api/cluster/control-state", headers=ADMIN)).json()
    assert says in shown["problem"]
    fixed = await api.post("/api/cluster/pause", params={"wait": 5}, headers=ADMIN)
    assert fixed.json()["acks"]["complete"], "the next command is applied"
    await async_wait_until(lambda: node.agent.state is AgentState.PAUSED)


async def _ignored_in_registry(registry: Any, agent_id: str) -> bool:
    entry = await registry.find_one({"_id": agent_id})
    return bool(entry and entry.get("control_ignored"))


async def test_an_agent_that_ignored_the_command_is_reported_as_ignored(
    node: Node, client: Client, api: httpx.AsyncClient
) -> None:
    registry = collection(node, client, "agent_registry")
    ahead = datetime.now(UTC) + timedelta(minutes=5)  # live for the whole test
    await registry.insert_one(
        {
            "_id": "stubborn",
            "heartbeat_at": ahead,
            "version_seen": 0,
            "control_ignored": {"version": 1, "command": "pause", "reason": "as a test"},
        }
    )
    answer = (await api.post("/api/cluster/pause", params={"wait": 1}, headers=ADMIN)).json()
    acks = answer["acks"]
    assert acks["ignored"] == [{"agent": "stubborn", "reason": "as a test"}]
    assert "stubborn" not in acks["acknowledged"] + acks["pending"]
    assert acks["complete"] is False
    assert node.api is not None
    env = {"PULLING_AGENT_TOKEN": TOKEN, "API_TOKENS": None}
    url = f"http://127.0.0.1:{node.api.port}"
    shown = await asyncio.to_thread(invoke, env, "ctl", "resume", "--url", url, "--wait", "1")
    assert shown.returncode == 1
    assert "IGNORED by stubborn: as a test" not in shown.stdout, "resume is version 2"
    await registry.update_one(
        {"_id": "stubborn"}, {"$set": {"control_ignored.version": 3, "version_seen": 0}}
    )
    again = await asyncio.to_thread(invoke, env, "ctl", "pause", "--url", url, "--wait", "1")
    assert again.returncode == 1 and "IGNORED by stubborn: as a test" in again.stdout


async def test_the_serving_agent_does_not_warn_about_its_own_command(
    node: Node, api: httpx.AsyncClient
) -> None:
    polls = count_reads(node)
    with structlog.testing.capture_logs() as logs:
        answer = await api.post("/api/cluster/pause", params={"reason": "deploy"}, headers=ADMIN)
        assert answer.status_code == 200
        seen = polls()
        await async_wait_until(lambda: polls() >= seen + 5, what="the document polled again")
    assert [e for e in logs if e.get("action") == "cluster.ignored"] == []


async def test_a_shutdown_waiting_for_acks_answers_before_its_agent_stops(node: Node) -> None:
    """Before: the agent serving the request stopped its API first, and the request
    waiting for acknowledgements was cancelled (500, "companion did not stop in time")."""
    assert node.api is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.api.port}") as http:
        answer = await http.post(
            "/api/cluster/shutdown", params={"wait": 10, "reason": "deploy"}, headers=ADMIN
        )
    assert answer.status_code == 200, answer.text
    acks = answer.json()["acks"]
    # Whether the answer comes after the agent acknowledged (its heartbeat) or after it left
    # the registry is a race; either way it is not pending, and nothing is.
    me = node.agent.settings.agent_id
    assert acks["pending"] == [] and acks["ignored"] == []
    assert acks["acknowledged"] + acks["stopped"] == [me], acks
    await async_wait_until(lambda: node.agent.state is AgentState.STOPPED, what="stopped")
