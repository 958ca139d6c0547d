"""The indexes of the work collection: what each query needs, in two tables.

:meth:`MongoWorkStore.ensure_indexes <pulling_agent.queue.mongo.MongoWorkStore.ensure_indexes>`
creates :data:`INDEXES` at start-up; the producer client creates the key index on first
use, and :data:`WORKFLOW_INDEXES` on its first workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING

from pulling_agent.queue.model import Status
from pulling_agent.queue.workflow import BATCH, BATCH_ID, WAITING, WAITING_ON

PRIORITY_FIELD = "priority"
KEY_FIELD = "enqueue_key"  # a producer's idempotency key (pulling_agent.client)
FRESH_ORDER = [(PRIORITY_FIELD, DESCENDING)]  # highest first; no priority: after all that have one


@dataclass(frozen=True)
class IndexSpec:
    keys: list[tuple[str, int]]
    options: Mapping[str, Any] = field(default_factory=dict)


INDEXES: dict[str, IndexSpec] = {
    # fresh and due-retry claims. Fresh work is read in priority order straight from the
    # index (equality on status and available_at, then priority): no in-memory sort. Equal
    # priorities come back in the index's record order, which on WiredTiger follows
    # insertion: roughly oldest first.
    "pulling_agent_claim_priority": IndexSpec(
        [("status", ASCENDING), ("available_at", ASCENDING), (PRIORITY_FIELD, DESCENDING)]
    ),
    # expired-lease recovery; renewals find a lease's documents among the few processing
    # ones through its status prefix (completions and re-reads go by _id), so the lease
    # token needs no index of its own - one less index to maintain on every write
    "pulling_agent_expiry": IndexSpec([("status", ASCENDING), ("lease.expires_at", ASCENDING)]),
    # producers' idempotency keys: the same key twice is one document
    "pulling_agent_enqueue_key": IndexSpec(
        [(KEY_FIELD, ASCENDING)],
        {"unique": True, "partialFilterExpression": {KEY_FIELD: {"$type": "string"}}},
    ),
}

# Workflows (queue.workflow), made by the producer client on its first call with ``after``
# or ``then`` (once per collection and process), not by the agents: a queue that never uses
# them has none of them. Partial: only waiting documents and batch members are in them, so
# other documents cost them nothing on MongoDB. (nx-27017 ignores partial filters: there
# every write would maintain them, about 30 % slower per write - one more reason not to
# make them unasked.) The dependents of a document that ended (a wildcard index: the key is
# a field name)...
WORKFLOW_INDEXES: dict[str, IndexSpec] = {
    "pulling_agent_waiting_on": IndexSpec(
        [(f"{WAITING_ON}.$**", ASCENDING)],
        {"partialFilterExpression": {"status": Status.WAITING.value}},
    ),
    # ... the waiting documents whose count reached 0 ...
    "pulling_agent_ready": IndexSpec(
        [(WAITING, ASCENDING)], {"partialFilterExpression": {"status": Status.WAITING.value}}
    ),
    # ... a batch's unfinished members and its counts by status ...
    "pulling_agent_batch_members": IndexSpec(
        [(BATCH_ID, ASCENDING), ("status", ASCENDING)],
        {"partialFilterExpression": {BATCH_ID: {"$exists": True}}},
    ),
    # ... and its then document, by batch id
    "pulling_agent_batch": IndexSpec(
        [(f"{BATCH}.id", ASCENDING)],
        {"partialFilterExpression": {f"{BATCH}.id": {"$exists": True}}},
    ),
}
