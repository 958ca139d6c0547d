"""What a flush of outcomes means for workflows, read only when it matters: final outcomes
whose write missed because dependents arrived after the claim (complete them again, as
dependencies), and which flagged documents really ended (to settle them).
:class:`~pulling_agent.queue.mongo.MongoWorkStore` calls these after its outcome write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pymongo.asynchronous.collection import AsyncCollection

from pulling_agent.queue.model import Completion, Document, Status
from pulling_agent.queue.queries import FINAL
from pulling_agent.queue.workflow import DEPENDENTS, Ended, dep_key


async def late_dependents(
    collection: AsyncCollection[Document], completions: Sequence[Completion]
) -> dict[str, Completion]:
    """Final outcomes whose write missed only because dependents were enqueued after
    the claim read the document (queries.outcome_filter): complete them again as
    dependencies. One find, only after a flush that did not apply in full."""
    unflagged = {dep_key(c.doc_id): c for c in completions if c.kind in FINAL and not c.dependents}
    if not unflagged:
        return {}
    held = collection.find(
        {
            "_id": {"$in": [c.doc_id for c in unflagged.values()]},
            "status": Status.PROCESSING.value,
            DEPENDENTS: {"$exists": True},
        },
        {"lease": 1},
    )
    late = {}
    async for doc in held:
        key = dep_key(doc["_id"])
        c = unflagged.get(key)
        lease = doc.get("lease")
        if c is not None and isinstance(lease, dict) and lease.get("token") == c.token:
            late[key] = replace(c, dependents=True)
    return late


async def ended(
    collection: AsyncCollection[Document], flagged: Sequence[Completion], all_applied: bool
) -> list[Ended]:
    """The documents among ``flagged`` that ended: all of them when the flush applied
    in full; else those the store shows in their final status without a lease."""
    if all_applied:
        return [Ended(c.doc_id, FINAL[c.kind], c.batch_id, c.dependents) for c in flagged]
    wanted = {dep_key(c.doc_id): c for c in flagged}
    ids = [c.doc_id for c in flagged]
    found = collection.find({"_id": {"$in": ids}}, {"status": 1, "lease": 1})
    done = []
    async for doc in found:
        c = wanted.get(dep_key(doc["_id"]))
        if c is not None and doc.get("status") == FINAL[c.kind] and "lease" not in doc:
            done.append(Ended(doc["_id"], FINAL[c.kind], c.batch_id, c.dependents))
    return done
