"""Fair claiming between the values of ``CONCURRENCY_KEY``: a walk over the key values.

Reading the queue's head serves it in priority and arrival order: one tenant's burst of a
million documents at the head makes every other tenant wait behind it. With a key field,
an agent reads fresh work instead **on from where it left off in the key space**: each read
is ``{…, priority: P, <key>: {$gt: last key}}`` sorted by key, on the index
``{status, available_at, priority: -1, <key>}``, so it costs the documents it returns
(never a scan of the tenants skipped) and comes back with the next tenants in key order.
A claim takes up to its batch from that read — a tenant at most one claim's worth per
turn — and moves on; when the read comes back short (the walk reached the end of the key
values), the claim reads again from the top (the highest priority's smallest key) and the
next turn begins. So every tenant with work gets a turn in every round, whatever its
backlog: round robin between key values, with a quantum of one claim.

Priority comes first: the walk stays within one priority level, and at least once a second
(``LEVEL_MAX_AGE``) a one-document read of the head checks whether a higher level has
arrived; it is walked at once. Within a tenant, documents come in priority and arrival
order. Documents without the key field form one more "tenant" (they sort first).

Key values of several BSON types: a ``$gt`` compares within one type (type bracketing), so
when the keys of one type end, the walk goes on to the next type group it has seen keys of,
from that group's least value (``$gte: ""`` for the strings, ``$gte: ObjectId(0…)``…: one
range on the index, never an ``$or``), before going back to the top. At the end of a
round the walk also reads one document of a type group it has not seen keys of (one group
a round, each at most every ``PROBE_AGAIN`` seconds), so keys of every type are found
within eight rounds (arrays and regular expressions, which have no least value to range
from, only by the reads that come across them). A walk that finds one key alone at its
level reads as a claim from the head does (a window, its rest the next claim's) and looks
past that key once a second (``ALONE_RECHECK``): a new tenant waits at most that long. A
value a ``$gt`` cannot go on from (a sub-document, an array, binary, NaN) moves the walk
past its whole type group: such keys of one type share a turn.

Pure, apart from the reads the store makes with it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import Binary, ObjectId, Timestamp
from pymongo.errors import OperationFailure

from pulling_agent.queue.documents import priority_rank
from pulling_agent.queue.indexes import PRIORITY_FIELD, IndexSpec, claim_order_then
from pulling_agent.queue.limits import key_text
from pulling_agent.queue.model import Document
from pulling_agent.queue.spread import window

Find = Callable[[Document, int, int, list[tuple[str, int]]], Awaitable[list[Document]]]
LEVEL_MAX_AGE = 1.0  # seconds between looks at the head for a higher priority
SPARE_MAX_AGE = 1.0  # seconds the rest of a one-key read may feed the next claim
ALONE_RECHECK = 1.0  # seconds a walk that found one key reads the top only (new keys wait)
PROBE_AGAIN = 30.0  # seconds before a type group found empty is looked for again
# key values a $gt can continue from exactly (type bracketing: a string cursor goes on among
# the strings; the next type group is read from its least value)
WALKABLE = (str, int, float, bool, ObjectId, datetime)


def fair_index(key_field: str) -> dict[str, IndexSpec]:
    """The index the walk reads: fresh work by priority level, then key value."""
    return {"pulling_agent_fair": IndexSpec(claim_order_then(key_field))}


def key_order(value: Any) -> tuple[int, Any]:
    """A key value as MongoDB sorts it (BSON type order first), for the memory store."""
    if value is None:
        return (-1, "")
    group = _group(value)
    if isinstance(value, float) and math.isnan(value):
        return (group, -math.inf)  # MongoDB sorts NaN below every number
    if not walkable(value):
        return (group, key_text(value))
    if isinstance(value, bool | int | float):
        return (group, float(value))
    if isinstance(value, datetime):
        return (group, value.timestamp())
    return (group, str(value))


# BSON's type groups after null, in its comparison order, and the filter of each group's
# keys from its first: a range from the group's least value (type bracketing keeps a
# MongoDB range within one type, on the index), or $type where no least value exists
_STARTS: list[Any] = [
    {"$gte": -math.inf},
    {"$gte": ""},
    {"$gte": {}},
    {"$type": "array"},
    {"$gte": Binary(b"")},
    {"$gte": ObjectId("0" * 24)},
    {"$gte": False},
    {"$gte": datetime(1, 1, 1, tzinfo=UTC)},
    {"$gte": Timestamp(0, 0)},
    {"$type": "regex"},
]
# no least value to range from: a $type, which may scan (1.7 s a read on nx-27017 at 100,000
# documents), is read only once keys of the type were seen (arrays, regular expressions)
_NOT_PROBED = frozenset({3, 9})
_GROUP_OF: dict[type, int] = {str: 1, dict: 2, list: 3, bytes: 4, ObjectId: 5, datetime: 7}
KEYLESS = -1  # the group of the documents without a key (null sorts before every type)


def _group(value: Any) -> int:
    """The index in :data:`_STARTS` of a key value's type group (:data:`KEYLESS`: none)."""
    if value is None:
        return KEYLESS
    if isinstance(value, bool):
        return 6
    if isinstance(value, int | float):
        return 0
    if isinstance(value, Timestamp):
        return 8
    return next((g for t, g in _GROUP_OF.items() if isinstance(value, t)), 9)


@dataclass(frozen=True, slots=True)
class _AfterGroup:
    """The walk's place after every key of one type group: where a key value a ``$gt``
    cannot go on from (a sub-document, an array, binary, NaN) leaves it, so that all the
    keys of such a type share one turn."""

    group: int


def walkable(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return isinstance(value, WALKABLE)


class Walk:
    """One agent's place in the key space: the priority level and key value its last
    claim ended on (None: the next read starts at the top), and the key types it has seen
    (the groups a walk goes on to when one ends)."""

    def __init__(self, key_field: str | None = None) -> None:
        self.key_field = key_field
        self._at: tuple[Any, Any] | None = None  # (priority value, key value or _AfterGroup)
        self._level_seen = -math.inf  # monotonic time the head's level was last checked
        self._groups: set[int] = set()  # the type groups of the keys seen
        self._probed: dict[int, float] = {}  # group -> when it was last looked for
        self._spare: list[Document] = []  # the rest of a read of a level with one key
        self._alone_until = 0.0  # until then the walk found one key lately: read the top
        self._spare_at = 0.0

    @property
    def active(self) -> bool:
        return self.key_field is not None

    @property
    def order(self) -> list[tuple[str, int]]:
        return [(PRIORITY_FIELD, -1), (str(self.key_field), 1)]

    def _within(self, match: Document, level: Any, condition: Document) -> Document:
        field = str(self.key_field)
        if PRIORITY_FIELD in match or field in match:
            return {"$and": [match, {PRIORITY_FIELD: level, field: condition}]}
        return {**match, PRIORITY_FIELD: level, field: condition}

    def on_from(self, match: Document) -> Document | None:
        """The filter of the greater keys of the walk's key's type, within its priority
        level (``$gt`` compares within one BSON type, on the index); None: the walk is at
        the top, or at the end of a type group."""
        if self._at is None:
            return None
        level, key = self._at
        if key is None or isinstance(key, _AfterGroup):
            return None
        return self._within(match, level, {"$gt": key})

    def next_group(self, match: Document) -> Document | None:
        """The filter of the keys of the next type group with keys (as seen), after the
        walk's place; None: no such group (the walk goes back to the top)."""
        if self._at is None:
            return None
        level, key = self._at
        here = key.group if isinstance(key, _AfterGroup) else _group(key)
        later = sorted(g for g in self._groups if g > here)
        return self._within(match, level, _STARTS[later[0]]) if later else None

    def probe(self, match: Document) -> Document | None:
        """A one-document look for keys of a type group not seen yet (one not looked for in
        ``PROBE_AGAIN`` seconds); None: none is due."""
        now = time.monotonic()
        for group in range(len(_STARTS)):
            if (
                group not in self._groups
                and group not in _NOT_PROBED
                and now - self._probed.get(group, -math.inf) >= PROBE_AGAIN
            ):
                self._probed[group] = now
                return {**match, str(self.key_field): _STARTS[group]}
        return None

    def learn(self, found: Iterable[Document]) -> None:
        for doc in found:
            group = _group(doc.get(str(self.key_field)))
            if group != KEYLESS:
                self._groups.add(group)

    def level_due(self) -> bool:
        """Time to look at the head for a higher priority level than the walk's."""
        return self._at is not None and time.monotonic() - self._level_seen >= LEVEL_MAX_AGE

    def head(self, top: Sequence[Document]) -> None:
        """The head as read now: a higher level than the walk's starts a walk of it."""
        self._level_seen = time.monotonic()
        if self._at is not None and top:
            here = priority_rank({PRIORITY_FIELD: self._at[0]})
            if priority_rank(top[0]) > here:
                self._at = None

    def take(self, found: Iterable[Document], limit: int) -> list[Document]:
        """Up to ``limit`` of ``found`` (walk order, read on from the walk's place, then
        from the top), each once; the walk moves to the last one taken."""
        taken: list[Document] = []
        seen: set[str] = set()
        for doc in found:
            mark = key_text(doc["_id"])
            if mark in seen:
                continue
            seen.add(mark)
            taken.append(doc)
            if len(taken) >= limit:
                break
        if taken:
            last = taken[-1]
            key = last.get(str(self.key_field))
            place = key if key is None or walkable(key) else _AfterGroup(_group(key))
            self._at = (last.get(PRIORITY_FIELD), place)
        return taken

    def wrapped(self) -> None:
        """The walk reached the end of the key values: the next read starts at the top."""
        self._at = None

    async def candidates(
        self,
        find: Find,
        match: Document,
        limit: int,
        head_order: list[tuple[str, int]],
        skip: int = 0,
    ) -> list[Document]:
        """Fresh candidates on from the walk's place, then from the top when it reached the
        end of the key values: one find, two at a round's end (and a one-document look at
        the head at most once a second). ``find(filter, limit, skip, sort)`` reads; ``skip``
        is how far this agent's share of the fleet reads ahead (queue.spread), so that
        agents walking together, or sharing one tenant, do not all read the same window
        (the share with no skip walks every key)."""
        if self._spare and time.monotonic() - self._spare_at < SPARE_MAX_AGE:
            spare, self._spare = self._spare[:limit], self._spare[limit:]
            return self.take(spare, limit)
        self._spare = []
        read = window(limit)
        if self.level_due():  # a higher priority may have come
            self.head(await find(match, 1, 0, head_order))
        found: list[Document] = []
        walked = False  # a read on from the walk's place came back
        alone = time.monotonic() < self._alone_until  # one key lately: look past it rarely
        for step in (self.on_from, self.next_group):
            query = None if alone else step(match)
            if query is not None and len(found) < limit:
                ahead = await find(query, read, skip, self.order)
                if skip and len(ahead) < limit:  # the share's slice is past the end
                    ahead = await find(query, read, 0, self.order)
                found += ahead
                walked = True
        if len(found) < limit:  # the end of a round
            self.wrapped()
            probe = self.probe(match)
            if probe is not None:  # keys of a type not seen yet?
                with contextlib.suppress(OperationFailure):  # a server that cannot: skip it
                    self.learn(await find(probe, 1, 0, self.order))
            top = await find(match, read, skip, self.order)
            if skip and len(top) < limit:  # the share's slice is past the end: the top
                top = await find(match, read, 0, self.order)
            if (alone or (walked and not found)) and len(
                {key_text(d.get(str(self.key_field))) for d in top}
            ) == 1:
                # one key at this level, nothing after it: the next claim takes the rest
                # of this read, as a claim from the head does (a stale one is only lost),
                # and for ALONE_RECHECK claims read the top alone, as the head would
                now = time.monotonic()
                self._spare, self._spare_at = top[limit:], now
                if not alone:
                    self._alone_until = now + ALONE_RECHECK
            else:
                self._alone_until = 0.0
            found += top
        self.learn(found)
        return self.take(found, limit)

    def mirror(self, ordered: Sequence[Document]) -> list[Document]:
        """For the memory store: ``ordered`` (fresh work in priority order) as the MongoDB
        store reads it: on from the walk's place within its level, then from the top."""
        field = str(self.key_field)
        if self.level_due():
            self.head(ordered[:1])
        by_key = sorted(ordered, key=lambda d: key_order(d.get(field)))
        by_walk = sorted(by_key, key=priority_rank, reverse=True)  # stable: keys stay sorted
        if self._at is None:
            return by_walk
        level = priority_rank({PRIORITY_FIELD: self._at[0]})
        place = self._at[1]
        after = (place.group + 0.5,) if isinstance(place, _AfterGroup) else key_order(place)
        rest = [d for d in by_walk if priority_rank(d) == level and key_order(d.get(field)) > after]
        return rest + by_walk
