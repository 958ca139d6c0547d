"""Retention: finished documents deleted by MongoDB's TTL monitor, once they are old enough.

``RETAIN_PROCESSED``, ``RETAIN_FAILED`` and ``RETAIN_CANCELLED`` each become a TTL index on
the time the document ended (``processed_at``, ``failed_at``, ``cancelled_at``), partial on
its ``status``: a document that is pending, processing or waiting is never in one of them,
whatever its time fields say, and a failed document put back to pending leaves the index.
Unset (the default) keeps documents for ever: the collection is the user's.

Made at start-up. A changed value updates the index in place (``collMod``); an agent whose
value differs from the index's says so with both values and sets its own, so a fleet
converges on the value of the agents started last. An agent with the setting unset leaves
an existing index alone (and says so): dropping it is the user's call.

MongoDB's TTL monitor runs about once a minute; deletion is never exact to the second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from pulling_agent.encoding import duration_text
from pulling_agent.queue.model import Document, Status
from pulling_agent.text import safe_text


@dataclass(frozen=True, slots=True)
class Retained:
    status: str
    setting: str
    field: str
    index: str


RETAINED = tuple(
    Retained(s.value, f"RETAIN_{s.value.upper()}", f"{s.value}_at", f"pulling_agent_retain_{s}")
    for s in (Status.PROCESSED, Status.FAILED, Status.CANCELLED)
)


@dataclass(frozen=True, slots=True)
class Note:
    level: str  # info or warning
    message: str


def ttl_index(indexes: Sequence[Mapping[str, Any]], field: str) -> Mapping[str, Any] | None:
    """The TTL index on ``field`` alone among ``indexes`` (by key: a server may rename it)."""
    for index in indexes:
        key = dict(index.get("key") or {})
        if list(key) == [field] and "expireAfterSeconds" in index:
            return index
    return None


async def current(collection: AsyncCollection[Document]) -> dict[str, float | None]:
    """Seconds each finished status is kept, as the collection's indexes say (None: for ever)."""
    indexes = await (await collection.list_indexes()).to_list()
    found = {r.status: ttl_index(indexes, r.field) for r in RETAINED}
    return {s: None if i is None else _seconds(i) for s, i in found.items()}


def _seconds(index: Mapping[str, Any]) -> float | None:
    value = index.get("expireAfterSeconds")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def kept_text(seconds: float | None) -> str:
    """How long documents are kept: ``7d``, or ``for ever``."""
    return "for ever" if seconds is None else duration_text(seconds)


async def ensure(
    collection: AsyncCollection[Document], wanted: Mapping[str, float | None]
) -> list[Note]:
    """Make the TTL indexes say what ``wanted`` (status -> seconds or None) says."""
    indexes = await (await collection.list_indexes()).to_list()
    notes = []
    for r in RETAINED:
        seconds = wanted.get(r.status)
        index = ttl_index(indexes, r.field)
        have = None if index is None else _seconds(index)
        if seconds is None:
            if index is not None:
                notes.append(
                    Note(
                        "warning",
                        f"{r.setting} is unset here, but the collection deletes {r.status} "
                        f"documents {kept_text(have)} after {r.field} (index "
                        f"{safe_text(index.get('name'), 100)}, made by another agent or by "
                        f"hand): left as it is. Set {r.setting}={kept_text(have)} to say so, or "
                        "drop the index to keep them for ever",
                    )
                )
            continue
        try:
            notes.append(await _apply(collection, r, int(seconds), index, have))
        except OperationFailure as exc:
            notes.append(
                Note(
                    "warning",
                    f"{r.setting}={kept_text(seconds)} not applied ({exc.code}): "
                    f"{safe_text(exc.details, 300)}; {r.status} documents are kept",
                )
            )
    return notes


async def _apply(
    collection: AsyncCollection[Document],
    r: Retained,
    seconds: int,
    index: Mapping[str, Any] | None,
    have: float | None,
) -> Note:
    said = f"{r.setting}={kept_text(seconds)}"
    if index is None:
        await collection.create_index(
            [(r.field, ASCENDING)],
            name=r.index,
            expireAfterSeconds=seconds,
            partialFilterExpression={"status": r.status},
        )
        return Note(
            "info",
            f"{said}: {r.status} documents are deleted {kept_text(seconds)} "
            f"after {r.field} (index {r.index} made)",
        )
    if have == seconds:
        return Note(
            "info", f"{said}: {r.status} documents are deleted {kept_text(seconds)} after {r.field}"
        )
    await collection.database.command(
        "collMod",
        collection.name,
        index={"name": index.get("name"), "expireAfterSeconds": seconds},
    )
    return Note(
        "warning",
        f"{said} here, but the collection's index said {kept_text(have)} (another agent's value, "
        f"or set by hand): changed to {kept_text(seconds)}",
    )
