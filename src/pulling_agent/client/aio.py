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

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection as Collection

from pulling_agent.client.clock import measured_async
from pulling_agent.client.enqueue import (
    Batch,
    bound,
    enqueue_flow,
    index_flow,
    is_workflow,
    prepare,
)
from pulling_agent.client.jobs import (
    MAX_TYPE_CHARS,
    Enqueued,
    EnqueueError,
    InvalidJob,
    Job,
    in_transaction,
    indexes_made,
    indexes_needed,
    option_text,
)
from pulling_agent.client.waiting import (
    JobCancelled,
    JobFailed,
    JobNotFound,
    ResultNotStored,
    WaitError,
    WaitTimeout,
)
from pulling_agent.client.waiting import wait_async as wait
from pulling_agent.queue import cancelling, tracecontext
from pulling_agent.queue.model import CancelResult
from pulling_agent.queue.ops import run_async

__all__ = [
    "Batch",
    "CancelResult",
    "EnqueueError",
    "Enqueued",
    "InvalidJob",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "ResultNotStored",
    "WaitError",
    "WaitTimeout",
    "cancel",
    "enqueue",
    "enqueue_many",
    "wait",
]


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
    session: AsyncClientSession | None = None,
) -> Enqueued:
    """Enqueue one document (see :func:`pulling_agent.client.enqueue` for the options)."""
    job = Job(payload, key, type, delay, run_at, priority, after, on_dependency_failure)
    return (await enqueue_many(collection, [job], type_field=type_field, session=session))[0]


@overload
async def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: None = None,
    type_field: str = "type",
    session: AsyncClientSession | None = None,
) -> list[Enqueued]: ...


@overload
async def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: Job,
    type_field: str = "type",
    session: AsyncClientSession | None = None,
) -> Batch: ...


async def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: Job | None = None,
    type_field: str = "type",
    session: AsyncClientSession | None = None,
) -> list[Enqueued] | Batch:
    """Enqueue many documents in one ``insert_many``, each item a :class:`Job` or a plain
    payload; results in input order. Invalid jobs raise :class:`InvalidJob` before anything
    is written; documents MongoDB refuses (other than as duplicates) raise
    :class:`EnqueueError`, whose ``results`` say which went in. With ``then``, the call is a
    batch: ``then`` runs once after every document of the call has ended, and the result
    is a :class:`Batch` (the same list, with ``batch_id`` and ``then``)."""
    transaction = in_transaction(collection, session, AsyncClientSession)
    with tracecontext.sending(collection) as sent:  # the documents' creation context
        clock = await measured_async(collection)  # MongoDB's time: a hello at most once a minute
        batch, after, then_doc = prepare(jobs, type_field, then, clock.now(), sent)
        if not batch.docs:
            return []
        indexes = indexes_needed(collection, batch.keyed, is_workflow(after, then_doc))
        await run_async(index_flow(indexes), collection)  # outside a transaction: client.enqueue
        indexes_made(collection, indexes)
        flow = enqueue_flow(batch, after, then_doc, clock.now, transaction)
        return bound(await run_async(flow, collection, session=session), collection)


async def cancel(
    collection: Collection[Any],
    ids: Sequence[Any],
    *,
    by: str = "producer",
    session: AsyncClientSession | None = None,
) -> CancelResult:
    """Cancel documents: a pending (or waiting) one at once, its dependents with it; a
    processing one by request to its agent, which cancels its handler cooperatively (see
    docs/QUEUE.md, Cancelling). ``by`` is written in ``cancel_reason``. A few writes per
    id: meant for a producer's few documents, not for a sweep."""
    in_transaction(collection, session, AsyncClientSession)  # checks it
    reason = option_text("by", by, MAX_TYPE_CHARS)
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InvalidJob("ids must be a list of document ids")
    now = (await measured_async(collection)).now()
    return await run_async(cancelling.cancel(list(ids), reason, now), collection, session=session)
