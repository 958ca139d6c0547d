"""Cancelling documents from outside (``ctl cancel``, the producer's ``cancel``, the API):
a pending or waiting document at once, a processing one by request to its agent.

Written once as a flow (:mod:`.ops`): the agents' store runs it, and so do both producer
clients, in the caller's session (and transaction) when given one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pulling_agent.queue.model import CancelResult, Document, Status, cancel_update
from pulling_agent.queue.ops import Find, Flow, Update
from pulling_agent.queue.workflow import BATCH_ID, DEPENDENTS, WAITING, WAITING_ON, ended_of, settle


def cancel(doc_ids: Sequence[Any], by: str, now: datetime) -> Flow[CancelResult]:
    """Cancel ``doc_ids``: a few conditional writes each (an operator's or a producer's few
    ids), then one read of those cancelled and the settling of their dependents and
    batches."""
    result = CancelResult()
    update = cancel_update(by, now)
    update["$unset"].update({WAITING: "", WAITING_ON: ""})
    for doc_id in doc_ids:
        if (yield from _cancel_one(doc_id, update)):
            result.cancelled.append(doc_id)
            continue
        requested = yield Update(
            {"_id": doc_id, "status": Status.PROCESSING.value},
            {"$set": {"cancel_requested": {"by": by, "at": now}}},
        )
        (result.requested if requested else result.not_found).append(doc_id)
    if result.cancelled:  # their dependents and batches learn of it
        found = yield Find({"_id": {"$in": result.cancelled}}, {BATCH_ID: 1, DEPENDENTS: 1})
        yield from settle([ended_of(doc, Status.CANCELLED.value) for doc in found], now)
    return result


def _cancel_one(doc_id: Any, update: Document) -> Flow[bool]:
    """Cancel a document that has not started (pending, or waiting in a workflow)."""
    for status in (Status.PENDING, Status.WAITING):  # one plain filter each
        if (yield Update({"_id": doc_id, "status": status.value}, update)):
            return True
    return False
