"""The producer API for asyncio: the functions of :mod:`pulling_agent.client`, taking a
PyMongo ``AsyncCollection`` and awaited.

    from pymongo import AsyncMongoClient
    from pulling_agent.client.aio import enqueue

    work = AsyncMongoClient(uri)["app"]["work"]
    result = await enqueue(work, {"to": "a@example.com"}, type="email", key="welcome-42")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection as Collection
from pymongo.errors import BulkWriteError, OperationFailure

from pulling_agent.client.jobs import (
    KEY_INDEX,
    KEY_SPEC,
    Enqueued,
    EnqueueError,
    InvalidJob,
    Job,
    index_error,
    key_index_made,
    needs_key_index,
    prepare,
)

__all__ = ["EnqueueError", "Enqueued", "InvalidJob", "Job", "enqueue", "enqueue_many"]


async def enqueue(
    collection: Collection[Any],
    payload: Mapping[str, Any],
    *,
    key: str | None = None,
    type: str | None = None,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    priority: int | None = None,
    type_field: str = "type",
) -> Enqueued:
    """Enqueue one document (see :func:`pulling_agent.client.enqueue`)."""
    job = Job(payload, key, type, delay, run_at, priority)
    return (await enqueue_many(collection, [job], type_field=type_field))[0]


async def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    type_field: str = "type",
) -> list[Enqueued]:
    """Enqueue many documents in one ``insert_many``, each item a :class:`Job` or a plain
    payload; results in input order. Invalid jobs raise :class:`InvalidJob` before anything
    is written; documents MongoDB refuses (other than as duplicates) raise
    :class:`EnqueueError`, whose ``results`` say which went in."""
    batch = prepare(jobs, type_field)
    if not batch.docs:
        return []
    if needs_key_index(batch, collection):
        try:
            await collection.create_index(KEY_SPEC.keys, name=KEY_INDEX, **KEY_SPEC.options)
        except OperationFailure as exc:
            raise index_error(exc) from None
        key_index_made(collection)
    try:
        await collection.insert_many(batch.docs, ordered=False)
    except BulkWriteError as exc:
        batch.refusals(exc.details)
    query = batch.lookup()
    found = [] if query is None else await collection.find(query, batch.projection()).to_list()
    return batch.results(found)
