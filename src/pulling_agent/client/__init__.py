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

Round trips: one per call; one more when some keys were taken already (to find their
documents), one on the first keyed call per collection in the process (the index), and a
``hello`` per client at most once a minute: times are written on MongoDB's clock, not this
host's (:mod:`pulling_agent.client.clock`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

from pymongo.collection import Collection

from pulling_agent.client.clock import measured
from pulling_agent.client.enqueue import Batch, enqueue_flow, is_workflow, prepare
from pulling_agent.client.jobs import (
    Enqueued,
    EnqueueError,
    InvalidJob,
    Job,
    indexes_made,
    indexes_needed,
)
from pulling_agent.queue.ops import run_sync

__all__ = ["Batch", "EnqueueError", "Enqueued", "InvalidJob", "Job", "enqueue", "enqueue_many"]


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
) -> Enqueued:
    """Enqueue one document (see the module's docstring for the options)."""
    job = Job(payload, key, type, delay, run_at, priority, after, on_dependency_failure)
    return (enqueue_many(collection, [job], type_field=type_field))[0]


@overload
def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: None = None,
    type_field: str = "type",
) -> list[Enqueued]: ...


@overload
def enqueue_many(
    collection: Collection[Any],
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    then: Job,
    type_field: str = "type",
) -> Batch: ...


def enqueue_many(
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
    clock = measured(collection)  # MongoDB's time: a hello at most once a minute
    batch, after, then_doc = prepare(jobs, type_field, then, clock.now())
    if not batch.docs:
        return []
    indexes = indexes_needed(collection, batch.keyed, is_workflow(after, then_doc))
    results = run_sync(enqueue_flow(batch, after, then_doc, indexes, clock.now), collection)
    indexes_made(collection, indexes)
    return results
