"""Connecting to MongoDB, and what the server says it is."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from pulling_agent import __version__
from pulling_agent.config import ChangeStreams, Settings

Client = AsyncMongoClient[dict[str, Any]]


def open_client(settings: Settings, **options: Any) -> Client:
    """A client for ``MONGODB_URI``; connects lazily, datetimes come back timezone-aware.
    Driver options (timeouts, TLS, replicaSet, ...) belong in the URI."""
    return AsyncMongoClient(
        settings.uri, tz_aware=True, appname=f"pulling-agent/{__version__}", **options
    )


async def supports_change_streams(client: Client) -> bool:
    """A replica-set member or a mongos supports change streams; a standalone does not."""
    hello = await client.admin.command("hello")
    return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"


async def use_change_streams(client: Client, mode: ChangeStreams) -> bool:
    if mode is ChangeStreams.OFF:
        return False
    if mode is ChangeStreams.ALWAYS:
        return True
    return await supports_change_streams(client)
