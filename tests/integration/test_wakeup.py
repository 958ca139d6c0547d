"""Idle wake-up: change streams where the server offers them, polling otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import build_node
from pulling_agent.queue.database import supports_change_streams
from tests.conftest import async_wait_until, make_settings
from tests.deviations import ON_NX


async def test_server_kind_is_detected(client: AsyncMongoClient[dict[str, Any]]) -> None:
    # nx-27017 reports a standalone (as a real standalone would); the upstream CI's replica
    # set reports a set name
    assert await supports_change_streams(client) is (not ON_NX)


async def noop(doc: dict[str, Any]) -> None:
    return None


async def test_an_idle_agent_wakes_on_insert_through_the_change_stream(
    mongo_uri: str, db_name: str, tmp_path: Path, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """POLL_INTERVAL is an hour: only the change stream can deliver this document in time."""
    settings = make_settings(
        tmp_path,
        mongodb_uri=mongo_uri,
        mongodb_database=db_name,
        poll_interval=3600,
        enable_change_streams="always",
        enable_api=False,
        enable_distributed_control=False,
    )
    collection = client[db_name]["work"]
    agent = build_node(settings, client, noop).agent
    task = asyncio.create_task(agent.run(install_signals=False))
    try:
        # idle once at start, then once more after the stream opened and woke it to look again
        await async_wait_until(lambda: agent.pipeline.counters.idle_waits >= 2, timeout=30)
        await collection.insert_one({"status": "pending", "n": 1})
        await async_wait_until(
            lambda: agent.pipeline.counters.processed == 1, timeout=30, what="change-stream wake"
        )
        assert agent.pipeline.counters.idle_waits >= 3
    finally:
        agent.request_shutdown("test over")
        assert await asyncio.wait_for(task, 30) == 0
        await client.drop_database(db_name)
