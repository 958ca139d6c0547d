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
documents), and one on the first keyed call per collection in the process (the index).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection
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


def enqueue(
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
    """Enqueue one document (see the module's docstring for the options)."""
    job = Job(payload, key, type, delay, run_at, priority)
    return enqueue_many(collection, [job], type_field=type_field)[0]


def enqueue_many(
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
            collection.create_index(KEY_SPEC.keys, name=KEY_INDEX, **KEY_SPEC.options)
        except OperationFailure as exc:
            raise index_error(exc) from None
        key_index_made(collection)
    try:
        collection.insert_many(batch.docs, ordered=False)
    except BulkWriteError as exc:
        batch.refusals(exc.details)
    query = batch.lookup()
    found = [] if query is None else collection.find(query, batch.projection()).to_list()
    return batch.results(found)
