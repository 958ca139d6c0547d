"""Wire an :class:`Agent` to MongoDB from :class:`Settings` and run it."""

from __future__ import annotations

from functools import partial

from pulling_agent.config import ChangeStreams, Settings
from pulling_agent.database import Client, open_client
from pulling_agent.logs import get_logger
from pulling_agent.pipeline import RunHandler
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.queue.wakeup import watch_for_work
from pulling_agent.runtime import Agent


async def run_agent(
    settings: Settings, run_handler: RunHandler, install_signals: bool = True
) -> int:
    """Run one agent against ``MONGODB_URI`` until it is shut down; returns the exit code."""
    get_logger(agent_id=settings.agent_id).info(
        "Connecting to MongoDB",
        action="agent.connect",
        uri=settings.redacted_uri,
        database=settings.mongodb_database,
        collection=settings.mongodb_collection,
    )
    client = open_client(settings)
    try:
        agent = build_agent(settings, client, run_handler)
        return await agent.run(install_signals=install_signals)
    finally:
        await client.close()


def build_agent(settings: Settings, client: Client, run_handler: RunHandler) -> Agent:
    """An agent on ``client``'s work collection, woken by change streams where enabled."""
    collection = client[settings.mongodb_database][settings.mongodb_collection]
    wakeup = None
    if settings.enable_change_streams is not ChangeStreams.OFF:
        wakeup = partial(watch_for_work, client, collection, settings.enable_change_streams)
    return Agent(settings, MongoWorkStore(collection), run_handler, wakeup=wakeup)
