"""The producer API: put work in the queue from your application (sync; for asyncio use
:mod:`pulling_agent.client.aio`, which has the same functions).

    from pymongo import MongoClient
    from pulling_agent.client import enqueue

    work = MongoClient(uri)["app"]["work"]
    result = enqueue(work, {"to": "a@example.com"}, type="email", key="welcome-42")
    result.id, result.created    # created is False when key "welcome-42" was there already

* ``key``: the same key twice is one document (a unique index on ``enqueue_key``, created
  on first use): a producer that retries after a timeout cannot enqueue twice. The key
  stays taken for as long as the document exists.
* ``delay`` (seconds or ``timedelta``) / ``run_at`` (an aware ``datetime``): the document is
  due then; an agent picks it up within ``POLL_INTERVAL`` of that.
* ``priority`` (0 to 1,000,000): among fresh documents, higher ones are claimed first;
  documents without a priority after all that have one (see docs/QUEUE.md for the exact
  guarantee).
* ``type``: sets ``type_field`` (default ``type``) for routing (``HANDLERS``).
* ``session``: your PyMongo session; in a transaction the call is part of it (the outbox:
  the job exists exactly when your writes commit; see :mod:`pulling_agent.client.enqueue`).

:func:`cancel` cancels documents from code, as ``pulling-agent cancel`` does.

Round trips: one per call; one more when some keys were taken already (to find their
documents), one on the first keyed call per collection in the process (the index), and a
``hello`` per client at most once a minute: times are written on MongoDB's clock, not this
host's (:mod:`pulling_agent.client.clock`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

from pymongo.client_session import ClientSession
from pymongo.collection import Collection

from pulling_agent.client.clock import measured
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
    wait,
)
from pulling_agent.queue import cancelling, tracecontext
from pulling_agent.queue.model import CancelResult
from pulling_agent.queue.ops import run_sync

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


def enqueue(
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
    session: ClientSession | None = None,
) -> Enqueued:
    """Enqueue one document (see the module's docstring for the options)."""
    job = Job(payload, key, type, delay, run_at, priority, after, on_dependency_failure)
    return (enqueue_many(collection, [job], type_field=type_field, session=session))[0]


@overload
def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: None = None,
    type_field: str = "type",
    session: ClientSession | None = None,
) -> list[Enqueued]: ...


@overload
def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: Job,
    type_field: str = "type",
    session: ClientSession | None = None,
) -> Batch: ...


def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: Job | None = None,
    type_field: str = "type",
    session: ClientSession | None = None,
) -> list[Enqueued] | Batch:
    """Enqueue many documents in one ``insert_many``, each item a :class:`Job` or a plain
    payload; results in input order. Invalid jobs raise :class:`InvalidJob` before anything
    is written; documents MongoDB refuses (other than as duplicates) raise
    :class:`EnqueueError`, whose ``results`` say which went in. With ``then``, the call is a
    batch: ``then`` runs once after every document of the call has ended, and the result
    is a :class:`Batch` (the same list, with ``batch_id`` and ``then``)."""
    transaction = in_transaction(collection, session, ClientSession)
    with tracecontext.sending(collection) as sent:  # the documents' creation context
        clock = measured(collection)  # MongoDB's time: a hello at most once a minute
        batch, after, then_doc = prepare(jobs, type_field, then, clock.now(), sent)
        if not batch.docs:
            return []
        indexes = indexes_needed(collection, batch.keyed, is_workflow(after, then_doc))
        run_sync(index_flow(indexes), collection)  # outside a transaction: see client.enqueue
        indexes_made(collection, indexes)
        flow = enqueue_flow(batch, after, then_doc, clock.now, transaction)
        return bound(run_sync(flow, collection, session=session), collection)


def cancel(
    collection: Collection[Any],
    ids: Sequence[Any],
    *,
    by: str = "producer",
    session: ClientSession | None = None,
) -> CancelResult:
    """Cancel documents: a pending (or waiting) one at once, its dependents with it; a
    processing one by request to its agent, which cancels its handler cooperatively (see
    docs/QUEUE.md, Cancelling). ``by`` is written in ``cancel_reason``. A few writes per
    id: meant for a producer's few documents, not for a sweep."""
    in_transaction(collection, session, ClientSession)  # checks it
    reason = option_text("by", by, MAX_TYPE_CHARS)
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InvalidJob("ids must be a list of document ids")
    now = (measured(collection)).now()
    return run_sync(cancelling.cancel(list(ids), reason, now), collection, session=session)
