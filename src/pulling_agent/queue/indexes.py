"""The indexes of the work collection: what each query needs, in three tables.

:func:`ensure` (the agent's ``ensure_indexes``) creates :data:`INDEXES` at start-up, and
:data:`SLOT_INDEXES` when fleet-wide limits are set; the producer client creates the key
index on first use, and :data:`WORKFLOW_INDEXES` on its first workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from pulling_agent.errors import ConfigError
from pulling_agent.queue.database import AUTHENTICATION_FAILED
from pulling_agent.queue.model import KEY_SLOT, LIMIT_SLOT, Document, Status
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


def claim_order_then(name: str) -> list[tuple[str, int]]:
    """The claim index's keys, then ``name``: the fresh read's order, and within one
    priority a field the server can bound (the fair walk's key, a limited type)."""
    return [*INDEXES["pulling_agent_claim_priority"].keys, (name, ASCENDING)]


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

# Fleet-wide limits (queue.limits): a slot string is held by one document at most. Partial
# on the string values, so the documents that hold none (all but the few processing under a
# limit) are not in them: they cost the other writes nothing.
SLOT_INDEXES: dict[str, IndexSpec] = {
    f"pulling_agent_{name}": IndexSpec(
        [(name, ASCENDING)],
        {"unique": True, "partialFilterExpression": {name: {"$type": "string"}}},
    )
    for name in (LIMIT_SLOT, KEY_SLOT)
}
# what the server answers when an index of that name or those keys exists with other
# options, or when existing documents break its uniqueness: trying again cannot help
INDEX_CONFLICTS = (85, 86, 11000)


async def ensure(
    collection: AsyncCollection[Document],
    limited: bool,
    extra: Mapping[str, IndexSpec] | None = None,
) -> list[str]:
    """Create :data:`INDEXES` (:data:`SLOT_INDEXES` when ``limited``, and ``extra``: the
    fair walk's, queue.fairness). All in one
    ``createIndexes``; when the server refuses one, one by one, so the others are made and
    the refused one is named (returned, for a warning). A slot index is not optional: a
    limit without it would not hold, so its absence raises :class:`ConfigError`."""
    wanted = {**INDEXES, **(SLOT_INDEXES if limited else {}), **(extra or {})}
    try:
        await collection.create_indexes(
            [IndexModel(spec.keys, name=name, **spec.options) for name, spec in wanted.items()]
        )
    except OperationFailure as exc:
        if exc.code == AUTHENTICATION_FAILED:
            raise  # not an index problem: the agent cannot work at all
    else:
        return await _check_slots(collection) if limited else []
    warnings = []
    for name, spec in wanted.items():
        try:
            await collection.create_index(spec.keys, name=name, **spec.options)
        except OperationFailure as exc:
            if name in SLOT_INDEXES and exc.code in INDEX_CONFLICTS:
                raise ConfigError(_slot_index_missing(collection, name, exc)) from None
            if exc.code == AUTHENTICATION_FAILED or name in SLOT_INDEXES:
                raise  # the agent cannot work (or not yet: the start-up retries)
            warnings.append(f"index {name} not created ({exc.code}): {exc.details}")
    return warnings + (await _check_slots(collection) if limited else [])


async def unique_fields(collection: AsyncCollection[Document]) -> set[str]:
    """The fields with a unique index of their own (by keys, whatever its name)."""
    unique = set()
    async for index in await collection.list_indexes():
        keys = list(index.get("key", {}))
        if index.get("unique") and len(keys) == 1:
            unique.add(keys[0])
    return unique


async def _check_slots(collection: AsyncCollection[Document]) -> list[str]:
    """Every slot field has a unique index (the server said so): else :class:`ConfigError`."""
    unique = await unique_fields(collection)
    for name, spec in SLOT_INDEXES.items():
        if spec.keys[0][0] not in unique:
            raise ConfigError(_slot_index_missing(collection, name, None))
    return []


def _slot_index_missing(
    collection: AsyncCollection[Document], name: str, exc: OperationFailure | None
) -> str:
    why = f" ({exc.code}: {str(exc)[:200]})" if exc is not None else ""
    return (
        f"TYPE_FLEET_CONCURRENCY/KEY_CONCURRENCY need the unique index {name} on "
        f"{collection.name}, which the server did not make{why}: drop the conflicting index "
        "(or the documents holding a stray slot), or unset the fleet-wide limits"
    )
