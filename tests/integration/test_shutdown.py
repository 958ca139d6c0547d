"""Shutdown always ends: a whole node (queue, follower, registry heartbeat, API) over the
wire, stopped by a cluster shutdown many times in a row.

Before the fix about 1 shutdown in 7 hung in ``stopping`` for ever: the registry heartbeat
dropped its cancellation inside ``asyncio.wait_for`` (Python 3.11) when the follower's
state change woke it in the same tick, and the final ``gather`` waited on it with no limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import build_node
from pulling_agent.control.cluster import ClusterCommand
from pulling_agent.runtime.state import AgentState
from tests.conftest import async_wait_until, make_settings

Client = AsyncMongoClient[dict[str, Any]]
REPEATS = 20  # P(no hang in 20 runs | 1-in-7 hang) < 0.05


@pytest.fixture
async def database(client: Client, db_name: str) -> AsyncIterator[str]:
    yield db_name
    await client.drop_database(db_name)


async def _noop(doc: dict[str, Any]) -> None:
    return None


async def test_a_cluster_shutdown_ends_every_time(
    client: Client, mongo_uri: str, database: str, tmp_path: Path
) -> None:
    exits = []
    for run in range(REPEATS):
        settings = make_settings(
            tmp_path / str(run),
            mongodb_uri=mongo_uri,
            mongodb_database=database,
            agent_id=f"agent-{run}",
            control_polling_interval=0.05,
            api_port=0,
            heartbeat_interval=0.05,
        )
        node = build_node(settings, client, _noop)
        task = asyncio.create_task(node.agent.run(install_signals=False))
        await async_wait_until(lambda: node.agent.state is AgentState.RUNNING)  # noqa: B023
        await node.cluster.command(ClusterCommand.SHUTDOWN, "repeat", "test", "", None)
        done, _ = await asyncio.wait({task}, timeout=20)
        assert done, f"run {run}: the agent hung in {node.agent.state}"
        exits.append(task.result())
        # the next agent must start under no standing shutdown
        await node.cluster.command(ClusterCommand.RESUME, "next run", "test", "", None)
    assert exits == [0] * REPEATS
