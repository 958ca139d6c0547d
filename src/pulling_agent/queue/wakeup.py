"""Wake an idle agent when work arrives, through a change stream on the work collection.

The stream is an accelerator, never the only path: the runtime still polls at
``POLL_INTERVAL`` (due retries and expired leases produce no event). A broken stream wakes
the agent once (so whatever arrived meanwhile is claimed by a normal query) and is reopened
after a short back-off; no resume token is needed for that, so none can go stale.
"""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from pulling_agent.config import ChangeStreams
from pulling_agent.logs import get_logger
from pulling_agent.queue.database import Client, use_change_streams
from pulling_agent.queue.model import Document

# Inserts, replaces, and updates that may have made work claimable: everything except the
# agents' own claims and completions. ($nin also matches events with no updateDescription,
# i.e. inserts and replaces, without an $or.)
PIPELINE: list[Document] = [
    {
        "$match": {
            "operationType": {"$in": ["insert", "replace", "update"]},
            "updateDescription.updatedFields.status": {
                "$nin": ["processing", "processed", "failed", "cancelled"]
            },
        }
    }
]

RETRY_SECONDS = 2.0


async def watch_for_work(
    client: Client,
    collection: AsyncCollection[Document],
    mode: ChangeStreams,
    arrived: asyncio.Event,
) -> None:
    """Set ``arrived`` on every matching change, until cancelled. Returns at once (polling
    only) when change streams are off or the server cannot provide them."""
    log = get_logger(component="wakeup")
    while True:
        try:
            enabled = await use_change_streams(client, mode)
            break
        except PyMongoError as exc:
            log.warning("cannot ask the server what it is", action="wakeup.hello", error=str(exc))
            await asyncio.sleep(RETRY_SECONDS)
    if not enabled:
        log.info("idle wake-up by polling", action="wakeup.mode", mode="polling")
        return
    log.info("idle wake-up by change stream", action="wakeup.mode", mode="change_streams")
    while True:
        try:
            async with await collection.watch(PIPELINE) as stream:
                arrived.set()  # look once more: work may have arrived before the stream opened
                async for _change in stream:
                    arrived.set()
        except PyMongoError as exc:
            log.warning(
                "change stream lost; polling until it reopens",
                action="wakeup.lost",
                error=str(exc)[:500],
                retry_in=RETRY_SECONDS,
            )
            arrived.set()  # something may have arrived while deaf
            await asyncio.sleep(RETRY_SECONDS)
