"""Who holds the fleet-wide limits' slots now (:mod:`~pulling_agent.queue.limits`): the
console's limits panel and ``doctor``'s slots that nobody will give back.

Reads only the documents that hold a slot: the slot indexes are sparse, and a slot is held
only while its document processes, so this is at most the fleet's processing documents
(bounded by ``MAX_HOLDERS`` per slot field), one ``find`` per field. Everything shown comes
from the slot strings and the holders' own fields, so a limit this environment does not set
(another agent's) still shows, with its capacity unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from pulling_agent.config import MAX_SLOTS
from pulling_agent.encoding import as_dict
from pulling_agent.queue.indexes import unique_fields
from pulling_agent.queue.limits import Limits
from pulling_agent.queue.model import SLOT_FIELDS, Document, Status
from pulling_agent.text import one_line

MAX_HOLDERS = 10_000  # holders read per slot field, at most
MAX_SLOT_CHARS = 300  # a slot string longer than this is no slot of ours
TOP_KEYS = 10  # busiest key values shown
MAX_STALE = 100  # stale holders listed, at most
MAX_PUBLISHED = 1_000  # type limits read from one registry entry, at most


@dataclass(frozen=True, slots=True)
class Usage:
    """One limit's scope: how many of its slots are held, of how many (None: a limit this
    environment does not set), and how many documents wait for it (full types only)."""

    shown: str
    running: int
    limit: int | None
    pending: int | None = None

    @property
    def full(self) -> bool:
        return self.limit is not None and self.running >= self.limit


@dataclass(frozen=True, slots=True)
class Stale:
    """A slot nobody gives back as things stand: its holder's lease expired more than a
    lease ago (no agent took the document over), or its holder is not processing."""

    slot: str
    doc_id: Any
    status: str
    owner: str
    expired_for: float | None  # seconds since the holder's lease expired

    @property
    def reason(self) -> str:
        if self.status != Status.PROCESSING.value:
            return (
                f"held by a document that is {self.status}, not processing (a producer "
                "wrote the agent's field)"
            )
        return (
            f"held by a document whose lease (agent {self.owner!r}) expired "
            f"{self.expired_for or 0:.0f} s ago and that no agent has taken over"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "_id": self.doc_id, "reason": self.reason, "fix": self.fix}

    @property
    def fix(self) -> str:
        if self.status != Status.PROCESSING.value:
            return "an agent with limits clears it at its next sweep; or $unset the field"
        return (
            "start (or resume) an agent that claims its type: recovery takes the document "
            "and its slot over; or cancel the document"
        )


@dataclass(slots=True)
class Occupancy:
    types: list[Usage] = field(default_factory=list)  # every limited type, by name
    keys: list[Usage] = field(default_factory=list)  # the busiest key values first
    key_values: int = 0  # key values holding a slot now
    stale: list[Stale] = field(default_factory=list)


def scope_of(slot: Any) -> str | None:
    """``t:invoice`` of ``t:invoice#2``; None for anything that is not a slot string."""
    if not isinstance(slot, str) or len(slot) > MAX_SLOT_CHARS:
        return None
    name, sep, number = slot.rpartition("#")
    return name if sep and name and number.isdigit() else None


def stale_holder(slot: str, doc: Document, now: datetime, grace: float) -> Stale | None:
    """Pure: ``doc``'s ``slot`` as a :class:`Stale`, or None while someone will free it."""
    status = doc.get("status")
    lease = as_dict(doc.get("lease"))
    owner = one_line(lease.get("owner"), 100)
    shown_status = one_line(status, 40)
    if status != Status.PROCESSING.value:
        return Stale(slot, doc.get("_id"), shown_status, owner, None)
    expires = lease.get("expires_at")
    if not isinstance(expires, datetime):
        return None  # the sweep hands such a lease back (documents.diagnose explains it)
    expired_for = (now - expires).total_seconds()
    if expired_for <= grace:
        return None
    return Stale(slot, doc.get("_id"), shown_status, owner, expired_for)


def tally(
    holders: list[tuple[str, Document]], limits: Limits
) -> tuple[Counter[str], dict[str, Usage]]:
    """Pure: slots held per scope name, and each key scope as shown with its capacity (from
    ``limits`` when it sets that limit)."""
    running: Counter[str] = Counter()
    keys: dict[str, Usage] = {}
    for slot, doc in holders:
        name = scope_of(slot)
        if name is None:
            continue
        running[name] += 1
        if name.startswith("k:") and name not in keys:
            known = [s for s in limits.scopes_of(doc) if s.name == name]
            if known:
                keys[name] = Usage(known[0].shown(limits.key_field), 0, known[0].capacity)
            else:
                keys[name] = Usage(one_line(name[2:], 200), 0, None)
    return running, keys


async def occupancy(
    collection: AsyncCollection[Document],
    limits: Limits,
    now: datetime,
    grace: float,
    top: int = TOP_KEYS,
    waiting: bool = True,
) -> Occupancy:
    """The limits' slots held now, the busiest key values, the pending documents of full
    types (one count each, when ``waiting``), and the slots held past ``grace`` seconds
    after their lease."""
    projection: Document = {
        "status": 1,
        "lease": 1,
        limits.type_field: 1,
        **dict.fromkeys(SLOT_FIELDS, 1),
    }
    if limits.key_field is not None:
        projection[limits.key_field] = 1
    holders: list[tuple[str, Document]] = []
    result = Occupancy()
    for name in SLOT_FIELDS:
        cursor = collection.find({name: {"$type": "string"}}, projection, limit=MAX_HOLDERS)
        async for doc in cursor:
            slot = doc[name]
            if scope_of(slot) is None:
                continue
            holders.append((slot, doc))
            stale = stale_holder(slot, doc, now, grace)
            if stale is not None and len(result.stale) < MAX_STALE:
                result.stale.append(stale)
    running, keys = tally(holders, limits)
    kinds = sorted({n[2:] for n in running if n.startswith("t:")} | set(limits.fleet))
    for kind in kinds:
        usage = Usage(one_line(kind, 100), running[f"t:{kind}"], limits.fleet.get(kind))
        if usage.full and waiting:
            pending = {"status": Status.PENDING.value, limits.type_field: kind}
            usage = replace(usage, pending=await count_matching(collection, pending))
        result.types.append(usage)
    busiest = sorted(keys, key=lambda n: (-running[n], n))
    result.keys = [Usage(keys[n].shown, running[n], keys[n].limit) for n in busiest[:top]]
    result.key_values = len(keys)
    return result


def serves(agent: Document, kind: str) -> bool:
    """The registered ``agent`` claims documents of type ``kind`` (no ``types``: all)."""
    types = agent.get("types")
    return types is None or (isinstance(types, list) and kind in types)


def published_types(agent: Document) -> dict[str, int] | None:
    """The type limits ``agent``'s registry entry says it claims under (None: it claims
    under none); values that are not a valid limit are dropped."""
    limits = as_dict(agent.get("limits"))
    if not limits:
        return None
    pairs = as_dict(limits.get("set")).get("types")
    published: dict[str, int] = {}
    for pair in pairs[:MAX_PUBLISHED] if isinstance(pairs, list) else ():
        if not isinstance(pair, list) or len(pair) != 2:
            continue
        kind, n = pair
        valid = isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_SLOTS
        if isinstance(kind, str) and valid:
            published[kind] = n
    return published


@dataclass(slots=True)
class FleetLimits:
    """The type limits of the live agents: each type's value where every agent that claims
    it agrees, and one line per type they disagree on (a limit then does not hold as set:
    each agent fills the slots it counts)."""

    agreed: dict[str, int] = field(default_factory=dict)
    disagreements: list[str] = field(default_factory=list)
    published: bool = False  # any live agent publishes limits


def fleet_types(live: list[Document]) -> FleetLimits:
    """Pure: what the live agents' registry entries (hostile values ignored) say."""
    published = [(agent, published_types(agent)) for agent in live]
    kinds = sorted({kind for _, types in published if types for kind in types})
    result = FleetLimits(published=any(types is not None for _, types in published))
    for kind in kinds:
        values: dict[int | None, list[str]] = {}
        for agent, types in published:
            if serves(agent, kind):
                name = one_line(agent.get("_id"), 100)
                values.setdefault((types or {}).get(kind), []).append(name)
        if len(values) == 1:
            (value,) = values
            if value is not None:
                result.agreed[kind] = value
            continue
        shown = "; ".join(
            f"{'no limit' if v is None else v} on {', '.join(sorted(names)[:5])}"
            + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            for v, names in sorted(values.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        )
        result.disagreements.append(
            f"type {one_line(kind, 100)!r}: agents claim it under different "
            f"TYPE_FLEET_CONCURRENCY values ({shown}); give every agent the same value"
        )
    return result


async def held_back(
    collection: AsyncCollection[Document], limits: Mapping[str, int], type_field: str
) -> dict[str, int]:
    """Pending documents of each type whose limit is 0 (held back by design, or by a
    mistake): type -> count, types with none pending left out."""
    counts = {}
    for kind in sorted(k for k, n in limits.items() if n == 0):
        pending = await count_matching(
            collection, {"status": Status.PENDING.value, type_field: kind}
        )
        if pending:
            counts[one_line(kind, 100)] = pending
    return counts


async def slots_indexed(collection: AsyncCollection[Document]) -> bool:
    """The slot indexes exist (some agent ran with limits): without them no agent honours a
    slot, and reading the slot fields would scan the collection."""
    return set(SLOT_FIELDS) <= await unique_fields(collection)


async def count_matching(collection: AsyncCollection[Document], query: Document) -> int:
    """``$match`` + ``$count``: what ``count_documents`` sends to MongoDB, as one
    aggregation (nx-27017's own count path is slow and sometimes wrong)."""
    cursor = await collection.aggregate([{"$match": query}, {"$count": "n"}])
    rows = await cursor.to_list()
    return int(rows[0]["n"]) if rows else 0
