"""The producer's clock: MongoDB's, like the agents' (:mod:`pulling_agent.queue.clock`).

A document's ``created_at`` and its ``available_at`` (``delay``) are compared by agents on
other nodes, so they are written on the server's clock as this process estimates it: two
``hello`` per client when first used (the first may include setting up the connection,
which widens its round trip and so its bound), then one at most once a minute
(:data:`REFRESH`), none per document. A producer whose node is ten minutes off still
enqueues ``delay=30`` work that is due thirty seconds later on the fleet's clock.

If the server cannot be asked (the ``hello`` fails), the call goes on with the last
estimate, or this process's clock when there is none: the insert itself will then fail
or succeed on its own terms, and the next call asks again."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from pulling_agent.queue.clock import FIRST_SAMPLES, REFRESH, ServerClock

# by the client's identity: clients compare equal by their options (two clients of one
# URI are ==), and each keeps its own estimate; an entry goes with its client
_clocks: dict[int, ServerClock] = {}
_lock = threading.Lock()


def _clock_of(client: MongoClient[Any] | AsyncMongoClient[Any]) -> ServerClock:
    with _lock:
        clock = _clocks.get(id(client))
        if clock is None:
            clock = _clocks[id(client)] = ServerClock()
            weakref.finalize(client, _clocks.pop, id(client), None)
        return clock


def _wanted(clock: ServerClock) -> int:
    """Samples to take now: two at first (the first hello of a client may wait for its
    connection; the second is tight), one when stale, else none."""
    return FIRST_SAMPLES if clock.sample is None else 1 if clock.stale(REFRESH) else 0


def measured(collection: Collection[Any]) -> ServerClock:
    """The estimate of MongoDB's clock for documents written to ``collection``, asked again
    when older than :data:`REFRESH`."""
    clock = _clock_of(collection.database.client)
    for _ in range(_wanted(clock)):
        sent = clock.monotonic()
        try:
            answer = collection.database.client.admin.command("hello")
        except PyMongoError:
            return clock
        clock.take(answer, sent, clock.monotonic(), clock.wall())
    return clock


async def measured_async(collection: AsyncCollection[Any]) -> ServerClock:
    """:func:`measured` for the asyncio driver."""
    clock = _clock_of(collection.database.client)
    for _ in range(_wanted(clock)):
        sent = clock.monotonic()
        try:
            answer = await collection.database.client.admin.command("hello")
        except PyMongoError:
            return clock
        clock.take(answer, sent, clock.monotonic(), clock.wall())
    return clock
