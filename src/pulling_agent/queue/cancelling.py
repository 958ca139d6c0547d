"""Cancelling documents from outside (``ctl cancel``, the producer's ``cancel``, the API):
a pending or waiting document at once, a processing one by request to its agent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from pulling_agent.queue.model import CancelResult, Document, Status, cancel_update
from pulling_agent.queue.ops import Note, run_async
from pulling_agent.queue.workflow import BATCH_ID, DEPENDENTS, WAITING, WAITING_ON, ended_of, settle


async def cancel(
    collection: AsyncCollection[Document],
    doc_ids: Sequence[Any],
    by: str,
    now: datetime,
    noted: Callable[[Note], None],
) -> CancelResult:
    result = CancelResult()
    update = cancel_update(by, now)
    update["$unset"].update({WAITING: "", WAITING_ON: ""})
    for doc_id in doc_ids:  # an operator's few ids: a few conditional writes each
        if await _cancel_one(collection, doc_id, update):
            result.cancelled.append(doc_id)
            continue
        running = await collection.update_one(
            {"_id": doc_id, "status": Status.PROCESSING.value},
            {"$set": {"cancel_requested": {"by": by, "at": now}}},
        )
        (result.requested if running.matched_count else result.not_found).append(doc_id)
    if result.cancelled:  # their dependents and batches learn of it
        found = collection.find({"_id": {"$in": result.cancelled}}, {BATCH_ID: 1, DEPENDENTS: 1})
        ended = [ended_of(doc, Status.CANCELLED.value) async for doc in found]
        await run_async(settle(ended, now), collection, noted)
    return result


async def _cancel_one(collection: AsyncCollection[Document], doc_id: Any, update: Document) -> bool:
    """Cancel a document that has not started (pending, or waiting in a workflow)."""
    for status in (Status.PENDING, Status.WAITING):  # one plain filter each
        done = await collection.update_one({"_id": doc_id, "status": status.value}, update)
        if done.modified_count:
            return True
    return False
