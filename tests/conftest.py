"""Shared fixtures: a MongoDB-wire server for the whole session (nx-27017 on a free loopback
port, or ``TEST_MONGODB_URI``), and a fresh database per test."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from pymongo import AsyncMongoClient, MongoClient

from pulling_agent.dev.embedded import EmbeddedServer
from tests import deviations


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        deviations.apply(item)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("TEST_MONGODB_URI")
    if external:
        yield external
        return
    with EmbeddedServer(tmp_path_factory.mktemp("nx")) as server:
        yield server.uri


@pytest.fixture
def db_name() -> str:
    return f"pa_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def work(mongo_uri: str, db_name: str) -> Iterator[Any]:
    """The test's work collection through a sync client (dropped afterwards)."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    yield client[db_name]["work"]
    client.drop_database(db_name)
    client.close()


@pytest.fixture
async def client(mongo_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture
def cli_env(mongo_uri: str, db_name: str) -> dict[str, str | None]:
    """The environment of an in-process command (:func:`invoke`): the test's database."""
    return {
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": db_name,
        "MONGODB_COLLECTION": "work",
        "LOG_FORMAT": "json",
        "HANDLER": None,
        "HANDLERS": None,
        "API_TOKENS": None,
    }


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def invoke(env: Mapping[str, str | None], *args: str, stdin: str = "") -> Ran:
    """``pulling-agent ARGS`` in this process (typer's CliRunner), with ``env`` over the
    process's environment and its output captured; the logging set-up the command made is
    undone. An exception that is not an exit fails the test (a crash is never exit 1)."""
    from typer.testing import CliRunner

    from pulling_agent.cli.main import app

    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    try:
        result = CliRunner().invoke(
            app, list(args), env=dict(env), input=stdin, prog_name="pulling-agent"
        )
    finally:
        structlog.configure(**config)
        root.handlers = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def wait_until(
    predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.01, what: str = ""
) -> None:
    """Async version of :func:`wait_until`; ``predicate`` may return an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def make_settings(tmp_path: Path, **overrides: Any) -> Any:
    """Settings for an in-process agent: fast intervals, files under ``tmp_path``."""
    from pulling_agent.config import load_settings

    values: dict[str, Any] = {
        "mongodb_uri": "mongodb://127.0.0.1:1/",
        "mongodb_database": "db",
        "mongodb_collection": "work",
        "agent_id": "agent-test",
        "batch_size": 10,
        "concurrency": 4,
        "poll_interval": 0.05,
        "heartbeat_interval": 0.05,
        "control_file_interval": 0.02,
        "lease_seconds": 30,
        "retry_base_seconds": 0,
        "retry_max_seconds": 0,
        "max_attempts": 3,
        "shutdown_timeout": 5,
        "health_dir": tmp_path / "health",
        "control_file": tmp_path / "control" / "state",
        "enable_change_streams": "false",
    }
    values.update(overrides)
    return load_settings(**values)
