"""A running agent node with tokens and an HTTP client on its app, for the API and the
console tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from pulling_agent.bootstrap import Node, build_node
from pulling_agent.runtime.state import AgentState
from tests.conftest import async_wait_until, make_settings

TOKEN = "ops-token-0123456789abcdef"  # admin, named ops
OTHER = "ci-token-fedcba9876543210"  # admin, named ci
READER = "grafana-token-0123456789ab"  # read, named grafana


async def _noop(doc: dict[str, Any]) -> None:
    return None


@pytest.fixture
async def node(
    mongo_uri: str, db_name: str, tmp_path: Path, client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[Node]:
    settings = make_settings(
        tmp_path,
        mongodb_uri=mongo_uri,
        mongodb_database=db_name,
        api_port=0,
        api_tokens=f"ops:{TOKEN},ci:{OTHER},grafana:{READER}:read",
        api_host="127.0.0.1",
        control_polling_interval=0.05,
    )
    node = build_node(settings, client, _noop)
    task = asyncio.create_task(node.agent.run(install_signals=False))
    await async_wait_until(lambda: node.agent.state is AgentState.RUNNING)
    yield node
    if not task.done():
        node.agent.request_shutdown("test over")
    await asyncio.wait_for(task, 30)
    await client.drop_database(db_name)


@pytest.fixture
async def api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the node's app, in process."""
    assert node.app is not None
    transport = httpx.ASGITransport(app=node.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
        yield http


@pytest.fixture
async def start_node(
    mongo_uri: str, db_name: str, tmp_path: Path, client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[Callable[..., Any]]:
    """Start agent nodes sharing the test's database, each with its own settings; returns
    an in-process HTTP client on the new node's app."""
    started: list[tuple[Node, asyncio.Task[int]]] = []

    async def _start(**overrides: Any) -> httpx.AsyncClient:
        settings = make_settings(
            tmp_path / str(len(started)),
            mongodb_uri=mongo_uri,
            mongodb_database=db_name,
            api_port=0,
            **overrides,
        )
        node = build_node(settings, client, _noop)
        task = asyncio.create_task(node.agent.run(install_signals=False))
        started.append((node, task))
        await async_wait_until(lambda: node.agent.state is AgentState.RUNNING)
        assert node.app is not None
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=node.app), base_url="http://127.0.0.1:8000"
        )

    yield _start
    for node, task in started:
        node.agent.request_shutdown("test over")
        await asyncio.wait_for(task, 30)
    await client.drop_database(db_name)


WRITES = {"find", "update", "insert", "delete", "aggregate", "createIndexes", "findAndModify"}


class Recorder(monitoring.CommandListener):
    """The commands a client sends on collections, as sent (PyMongo command monitoring)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in WRITES:
            self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        taken, self.commands = self.commands, []
        return taken


@contextlib.contextmanager
def listened(uri: str, db_name: str, listener: monitoring.CommandListener) -> Iterator[Any]:
    """The test's work collection through a sync client of its own, whose commands
    ``listener`` hears (the database is left to the ``work`` fixture or the caller)."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        uri, tz_aware=True, event_listeners=[listener]
    )
    try:
        yield client[db_name]["work"]
    finally:
        client.close()


@contextlib.asynccontextmanager
async def alistened(
    uri: str, db_name: str, listener: monitoring.CommandListener
) -> AsyncIterator[Any]:
    """:func:`listened` with the asyncio client."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri, tz_aware=True, event_listeners=[listener]
    )
    try:
        yield client[db_name]["work"]
    finally:
        await client.close()


@pytest.fixture
async def recorded(mongo_uri: str, db_name: str) -> AsyncIterator[tuple[Any, Recorder]]:
    """The test's work collection through an async client whose commands are recorded."""
    recorder = Recorder()
    async with alistened(mongo_uri, db_name, recorder) as collection:
        yield collection, recorder
        await collection.database.client.drop_database(db_name)
