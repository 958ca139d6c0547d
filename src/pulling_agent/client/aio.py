"""The producer API for asyncio: the functions of :mod:`pulling_agent.client`, taking a
PyMongo ``AsyncCollection`` and awaited.

    from pymongo import AsyncMongoClient
    from pulling_agent.client.aio import enqueue

    work = AsyncMongoClient(uri)["app"]["work"]
    result = await enqueue(work, {"to": "a@example.com"}, type="email", key="welcome-42")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

from pymongo.asynchronous.collection import AsyncCollection as Collection

from pulling_agent.client.clock import measured_async
from pulling_agent.client.enqueue import Batch, enqueue_flow, is_workflow, prepare
from pulling_agent.client.jobs import (
    Enqueued,
    EnqueueError,
    InvalidJob,
    Job,
    indexes_made,
    indexes_needed,
)
from pulling_agent.queue.ops import run_async

__all__ = ["Batch", "EnqueueError", "Enqueued", "InvalidJob", "Job", "enqueue", "enqueue_many"]


async def enqueue(
    collection: Collection[Any],
    payload: Mapping[str, Any],
    *,
    key: str | None = None,
    type: str | None = None,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    priority: int | None = None,
    after: Sequence[Any] | None = None,
    on_dependency_failure: str = "cancel",
    type_field: str = "type",
) -> Enqueued:
    """Enqueue one document (see :func:`pulling_agent.client.enqueue` for the options)."""
    job = Job(payload, key, type, delay, run_at, priority, after, on_dependency_failure)
    return (await enqueue_many(collection, [job], type_field=type_field))[0]


@overload
async def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: None = None,
    type_field: str = "type",
) -> list[Enqueued]: ...


@overload
async def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: Job,
    type_field: str = "type",
) -> Batch: ...


async def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: Job | None = None,
    type_field: str = "type",
) -> list[Enqueued] | Batch:
    """Enqueue many documents in one ``insert_many``, each item a :class:`Job` or a plain
    payload; results in input order. Invalid jobs raise :class:`InvalidJob` before anything
    is written; documents MongoDB refuses (other than as duplicates) raise
    :class:`EnqueueError`, whose ``results`` say which went in. With ``then``, the call is a
    batch: ``then`` runs once after every document of the call has ended, and the result
    is a :class:`Batch` (the same list, with ``batch_id`` and ``then``)."""
    clock = await measured_async(collection)  # MongoDB's time: a hello at most once a minute
    batch, after, then_doc = prepare(jobs, type_field, then, clock.now())
    if not batch.docs:
        return []
    indexes = indexes_needed(collection, batch.keyed, is_workflow(after, then_doc))
    results = await run_async(enqueue_flow(batch, after, then_doc, indexes, clock.now), collection)
    indexes_made(collection, indexes)
    return results
