"""Fleet-wide limits: at most N documents of a type, or of one value of a key field (a
tenant, a customer), processing at once across every agent of the fleet.

MongoDB has no advisory locks and no ``SKIP LOCKED``; a counter beside the queue would need
a transaction with every claim and every outcome. Here a limit is a set of **slots**, and
a slot is a string a processing document carries: ``limit_slot`` for its type's limit
(``t:invoice#2``: slot 2 of 3), ``key_slot`` for its key value's (``k:*=s:acme#0``). A
unique sparse index on each field lets at most one document hold a slot string, so a
scope of N slots has at most N documents processing: the claim write sets each document's
slots, and the server refuses a second holder atomically (duplicate key) - the same
conditional write that makes a claim exclusive makes the limit exact.

* Freeing a slot costs nothing: every write that takes a document out of ``processing``
  (outcome, retry, release, recovery, requeue) unsets its slots with its lease
  (``model.UNLEASE``), in the same write.
* A held slot needs no renewal of its own: it lives as long as its document's lease.
* A dead agent's slots stay with their documents until their leases expire and the
  recovery claim takes the documents over - slots included - so an interrupted document
  runs again first and nothing is ever held by nobody.

Which slot number to try comes from one read of the slots held in the candidates' scopes
(one ``find`` on the slot indexes per claim write); a stale read only costs a duplicate
key, never a second holder. Scopes found full are left out of the next candidate reads for
a moment (:func:`exclusion`), so a blocked tenant at the head of the queue does not hide
the documents behind it. Pure, apart from :func:`held_slots`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import bson
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from pulling_agent.config import Settings
from pulling_agent.queue.indexes import IndexSpec, claim_order_then
from pulling_agent.queue.model import KEY_SLOT, LIMIT_SLOT, SLOT_FIELDS, Document, Status
from pulling_agent.queue.workflow import dep_key
from pulling_agent.text import one_line

ANY_TYPE = "*"  # the scope of KEY_CONCURRENCY: a key value's documents of every type
MAX_KEY_BYTES = 200  # a longer key (or one not a string or an integer) is slotted by hash
MAX_EXCLUDED = 500  # key values one claim's filter leaves out, at most
MAX_HOLDING = 100_000  # documents whose scopes a limiter remembers (a bound, never reached)
FULL_MAX_AGE = 1.0  # seconds a scope found full stays out of the candidate reads
DUPLICATE_KEY = 11000
# a key value a filter can name exactly ($in): others are only slotted, never excluded
EXCLUDABLE = (str, int, float, bool, ObjectId, datetime)


def key_text(value: Any) -> str:
    """The slot text of a key value: itself for a short string or an integer, else a
    digest of its BSON (so any value of any size gives a bounded, index-safe string)."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        if len(raw) <= MAX_KEY_BYTES:
            return "s:" + value
        return "h:" + hashlib.sha256(b"s" + raw).hexdigest()[:40]
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return f"i:{value}"
    try:
        raw = bson.encode({"v": value})
    except Exception:  # not BSON (the in-memory store holds any Python value)
        raw = f"{type(value).__qualname__}:{value!r}".encode("utf-8", "surrogatepass")
    return "h:" + hashlib.sha256(raw).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Scope:
    """One limit as one document meets it: its slot field, name and capacity."""

    field: str  # LIMIT_SLOT or KEY_SLOT
    name: str  # t:<type>  or  k:<type or *>=<key text>
    capacity: int
    kind: str | None  # the type the limit is of (None: a key limit of every type)
    value: Any = None  # the key value (key limits)

    def slot(self, n: int) -> str:
        return f"{self.name}#{n}"

    def owns(self, slot: Any) -> bool:
        """``slot`` is one of this scope's (a document's own, kept on a recovery claim)."""
        if not isinstance(slot, str) or not slot.startswith(self.name + "#"):
            return False
        number = slot[len(self.name) + 1 :]
        return number.isdigit() and int(number) < self.capacity and number == str(int(number))

    def shown(self, key_field: str | None) -> str:
        """For people: ``invoice`` or ``tenant='acme' (invoice)``, one inert line."""
        if self.field == LIMIT_SLOT:
            return one_line(self.kind, 100)
        where = f" ({one_line(self.kind, 100)})" if self.kind is not None else ""
        return f"{key_field}={one_line(repr(self.value), 100)}{where}"


@dataclass(frozen=True)
class Limits:
    """The fleet-wide limits an agent claims under (``TYPE_FLEET_CONCURRENCY``,
    ``CONCURRENCY_KEY`` with ``KEY_CONCURRENCY`` / ``TYPE_KEY_CONCURRENCY``)."""

    type_field: str = "type"
    fleet: Mapping[str, int] = field(default_factory=dict)  # type -> slots in the fleet
    key_field: str | None = None
    key_limit: int | None = None  # slots per key value, documents of every type
    type_key_limits: Mapping[str, int] = field(default_factory=dict)  # per (type, key)

    @property
    def active(self) -> bool:
        keyed = self.key_field is not None and bool(self.key_limit or self.type_key_limits)
        return bool(self.fleet) or keyed

    def scopes_of(self, doc: Mapping[str, Any]) -> list[Scope]:
        """The limits ``doc`` is under: none, its type's, its key value's, or both."""
        kind = doc.get(self.type_field)
        kind = kind if isinstance(kind, str) else None
        scopes = []
        if kind is not None and kind in self.fleet:
            scopes.append(Scope(LIMIT_SLOT, f"t:{kind}", self.fleet[kind], kind))
        if self.key_field is not None:
            value = doc.get(self.key_field)
            per_type = self.type_key_limits.get(kind) if kind is not None else None
            capacity = per_type or self.key_limit
            if value is not None and capacity:
                of = kind if per_type else None
                name = f"k:{ANY_TYPE if of is None else of}={key_text(value)}"
                scopes.append(Scope(KEY_SLOT, name, capacity, of, value))
        return scopes


@dataclass
class Plan:
    """What one claim write tries: each candidate with the slots it gets, and the scopes
    found full (their candidates wait)."""

    take: list[tuple[Document, dict[str, str]]] = field(default_factory=list)
    full: dict[str, Scope] = field(default_factory=dict)
    blocked: int = 0
    scopes: dict[str, Scope] = field(default_factory=dict)  # of the slots taken, by slot


def assign(candidates: Iterable[Document], limits: Limits, held: Mapping[str, Any]) -> Plan:
    """Give each candidate, in claim order, a free slot of each of its scopes (its own
    slot first: a recovered document keeps what it held). ``held``: slot -> the ``_id``
    of the document holding it, as last read. A candidate with a full scope waits."""
    taken: dict[str, Any] = dict(held)
    plan = Plan()
    for doc in candidates:
        chosen: dict[str, str] = {}
        for scope in limits.scopes_of(doc):
            slot = _free(scope, doc, taken)
            if slot is None:
                plan.full[scope.name] = scope
                break
            chosen[scope.field] = slot
        else:
            for scope in limits.scopes_of(doc):
                plan.scopes[chosen[scope.field]] = scope
            for slot in chosen.values():
                taken[slot] = doc["_id"]
            plan.take.append((doc, chosen))
            continue
        plan.blocked += 1
    return plan


def _free(scope: Scope, doc: Document, taken: Mapping[str, Any]) -> str | None:
    own = doc.get(scope.field)
    if isinstance(own, str) and scope.owns(own) and taken.get(own, doc["_id"]) == doc["_id"]:
        return own
    for n in range(scope.capacity):
        slot = scope.slot(n)
        if slot not in taken:
            return slot
    return None


def slot_query(scopes: Iterable[Scope]) -> Document | None:
    """The filter of the documents holding any slot of ``scopes``: an exact ``$in`` for a
    scope of one slot, a range of its names for more (both on the slot indexes)."""
    exact: dict[str, list[str]] = {}
    ranges: list[Document] = []
    for scope in {s.name: s for s in scopes}.values():
        if scope.capacity == 1:
            exact.setdefault(scope.field, []).append(scope.slot(0))
        else:  # "#" + 1 == "$": every "<name>#n"
            ranges.append({scope.field: {"$gte": scope.name + "#", "$lt": scope.name + "$"}})
    clauses = [{name: {"$in": slots}} for name, slots in exact.items()] + ranges
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


async def held_slots(
    collection: AsyncCollection[Document], scopes: Sequence[Scope]
) -> dict[str, Any]:
    """The slots of ``scopes`` held now: slot -> holder ``_id`` (one find)."""
    query = slot_query(scopes)
    if query is None:
        return {}
    held: dict[str, Any] = {}
    async for doc in collection.find(query, dict.fromkeys(SLOT_FIELDS, 1)):
        for name in SLOT_FIELDS:
            slot = doc.get(name)
            if isinstance(slot, str):
                held[slot] = doc["_id"]
    return held


async def clear_strays(collection: AsyncCollection[Document]) -> int:
    """Unset slots on documents that are not processing (only a producer writing the
    agent's fields makes one): held by nobody, they would keep a slot from every claim. On
    the slot indexes: one ``update_many`` per field, over the few documents that hold one."""
    cleared = 0
    for name in SLOT_FIELDS:
        stray = {name: {"$type": "string"}, "status": {"$ne": Status.PROCESSING.value}}
        result = await collection.update_many(stray, {"$unset": {name: ""}})
        cleared += result.modified_count
    return cleared


def limits_of(
    settings: Settings,
    fleet: Mapping[str, int] | None = None,
    keyed: Mapping[str, int] | None = None,
) -> Limits:
    """The fleet-wide limits of ``settings`` (the environment), over a Worker's ``fleet``
    and ``keyed`` options (its fleet_concurrency= and key_concurrency=)."""
    return Limits(
        type_field=settings.type_field,
        fleet={**(fleet or {}), **settings.fleet_limits},
        key_field=settings.concurrency_key,
        key_limit=settings.key_concurrency,
        type_key_limits={**(keyed or {}), **settings.type_key_limits},
    )


async def waiting_for(
    collection: AsyncCollection[Document], limits: Limits, doc: Mapping[str, Any]
) -> list[str]:
    """For people (``get``): the full scopes a pending document waits for, as
    ``a slot of invoice (3/3 running)`` (one count on the slot index each)."""
    if doc.get("status") != Status.PENDING.value:
        return []
    waits = []
    for scope in limits.scopes_of(doc):
        query = slot_query([scope])
        held = await collection.count_documents(query) if query is not None else 0
        if held >= scope.capacity:
            waits.append(
                f"a slot of {scope.shown(limits.key_field)} ({held}/{scope.capacity} running)"
            )
    return waits


def exclusion(full: Iterable[Scope], limits: Limits) -> list[Document]:
    """``$nor`` clauses that leave the documents of full key scopes out of a candidate read,
    by value (those a filter can name exactly; full types: :func:`narrowed`)."""
    keys: dict[str | None, list[Any]] = {}
    count = 0
    for scope in full:
        if scope.field == KEY_SLOT and isinstance(scope.value, EXCLUDABLE) and count < MAX_EXCLUDED:
            keys.setdefault(scope.kind, []).append(scope.value)
            count += 1
    clauses: list[Document] = []
    for kind, values in keys.items():
        clause: Document = {str(limits.key_field): {"$in": values}}
        if kind is not None:
            clause[limits.type_field] = kind
        clauses.append(clause)
    return clauses


def narrowed(match: Document, type_field: str, types: Sequence[str]) -> Document | None:
    """``match`` without the documents of the full ``types``; None when nothing is left (an
    agent routed to full types only: no read at all). A condition on the type field itself
    (``$in`` of the routed types, ``$nin`` of the full ones) rather than a ``$nor``: on
    :func:`typed_index` the server skips a full type's backlog by the index bounds instead
    of reading through it (nx-27017: 463 -> 35 ms at 20,000 pending of a full type)."""
    if not types:
        return match
    condition = match.get(type_field)
    if condition is None:
        return {**match, type_field: {"$nin": list(types)}}
    if isinstance(condition, dict) and list(condition) == ["$in"]:  # routing (claim_scope)
        left = [t for t in condition["$in"] if t not in types]
        return {**match, type_field: {"$in": left}} if left else None
    nor = [*match.get("$nor", []), {type_field: {"$in": list(types)}}]
    return {**match, "$nor": nor}


def typed_index(type_field: str) -> dict[str, IndexSpec]:
    """The index a read leaving full types out runs on: the claim index's order (status,
    ``available_at``, priority), then the type, so their documents are skipped by bounds."""
    return {"pulling_agent_limited_types": IndexSpec(claim_order_then(type_field))}


def is_duplicate(exc: BaseException) -> bool:
    """A write refused because another document holds the slot (E11000)."""
    return getattr(exc, "code", None) == DUPLICATE_KEY


def conflicting(slots: Mapping[str, str], exc: BaseException) -> Mapping[str, str]:
    """Of the slots a refused claim tried, the one the server says another document holds
    (the duplicate key error's ``keyValue``, as MongoDB reports it); all of them when the
    error does not say (then every scope of the document counts as full for a moment)."""
    details = getattr(exc, "details", None)
    key = details.get("keyValue") if isinstance(details, Mapping) else None
    if isinstance(key, Mapping):
        named = {name: slot for name, slot in slots.items() if key.get(name) == slot}
        if named:
            return named
    return slots


def with_slots(update: Document, slots: Mapping[str, str]) -> Document:
    """A claim update that also sets the document's slots."""
    return {**update, "$set": {**update["$set"], **slots}} if slots else update


class Limiter:
    """One store's limits and what its claims learnt: the scopes found full (left out of
    the next candidate reads for ``FULL_MAX_AGE``, or until this agent frees a slot of
    theirs) and the scopes of the documents it holds."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._full: dict[str, tuple[Scope, float]] = {}  # name -> scope, until (monotonic)
        self._holding: dict[str, list[str]] = {}  # dep_key(_id) -> scope names it holds
        self._scopes: dict[str, Scope] = {}  # the last plan's slots -> their scopes
        # reads past the full scopes that found nothing: (kind, full scopes) -> until
        self._behind: dict[tuple[str, frozenset[str]], float] = {}
        self.waited = 0  # candidates that waited for a full scope
        self.refused_total = 0  # claims the unique slot indexes refused (another held it)

    def snapshot(self) -> dict[str, Any]:
        """For the metrics and the registry entry (``set``: the limits it claims under, so
        ``doctor`` and the console see the fleet's values, queue.occupancy). Pairs, not
        sub-documents: a type or key name is any string, dots and ``$`` included."""
        limits = self.limits
        return {
            "waited": self.waited,
            "refused": self.refused_total,
            "holding": len(self._holding),
            "set": {
                "types": [[kind, n] for kind, n in sorted(limits.fleet.items())],
                "key": limits.key_field,
                "key_limit": limits.key_limit,
                "type_key": [[kind, n] for kind, n in sorted(limits.type_key_limits.items())],
            },
        }

    @property
    def active(self) -> bool:
        return self.limits.active

    def excluded(self) -> tuple[list[str], list[Document]]:
        """The types and the ``$nor`` key clauses of the scopes found full lately."""
        full = self._known_full()
        if not full:
            return [], []
        types = [s.kind for s in full if s.field == LIMIT_SLOT and s.kind is not None]
        return types, exclusion(full, self.limits)

    def _known_full(self) -> list[Scope]:
        """The scopes found full less than ``FULL_MAX_AGE`` ago."""
        if self._full:
            now = time.monotonic()
            for name in [n for n, (_, until) in self._full.items() if until <= now]:
                del self._full[name]
        return [scope for scope, _ in self._full.values()]

    def indexes(self) -> dict[str, IndexSpec]:
        """The index the reads leaving full types out need (none without type limits)."""
        return typed_index(self.limits.type_field) if self.limits.fleet else {}

    def leave_out(self, match: Document, kind: str = "") -> Document | None:
        """``match`` without the documents of the scopes found full lately (None: all it
        could claim is full). ``match`` itself when no scope is full, or when a read of
        ``kind`` past these full scopes just found nothing: then only their documents are
        there, and reading them (the plan sees which slots freed) is all there is to do."""
        types, clauses = self.excluded()
        if not types and not clauses:
            return match
        if self._behind.get((kind, frozenset(self._full)), 0.0) > time.monotonic():
            return match  # nothing else is there: the full scopes' own, as slots free
        narrow = narrowed(match, self.limits.type_field, types)
        if narrow is not None and clauses:
            narrow = {**narrow, "$nor": [*narrow.get("$nor", []), *clauses]}
        return narrow

    def nothing_behind(self, kind: str) -> None:
        """A read of ``kind`` leaving the full scopes out found nothing: it is not sent again
        while the same scopes are full (``FULL_MAX_AGE`` at most); the claims read the
        queue's head instead, where the full scopes' documents are, so a slot another
        agent frees is taken at once. With one type full and a backlog of it, every claim
        would otherwise read past it for nothing: on a server that cannot skip by index
        bounds, a scan of the backlog."""
        now = time.monotonic()
        if len(self._behind) >= MAX_EXCLUDED:
            self._behind = {k: t for k, t in self._behind.items() if t > now}
        self._behind[(kind, frozenset(self._full))] = now + FULL_MAX_AGE

    async def plan(
        self, collection: AsyncCollection[Document], candidates: Sequence[Document]
    ) -> tuple[dict[str, dict[str, str]], int]:
        """The slots each candidate gets (by ``dep_key``; a candidate under no limit gets
        none), and how many wait for a full scope. One find, when any is limited."""
        full = {scope.name for scope in self._known_full()}
        skipped = 0
        if full:  # known full (spare candidates were read before it was): not tried blind
            known = [d for d in candidates if not self._waits(d, full)]
            skipped, candidates = len(candidates) - len(known), known
            self.waited += skipped
        scopes = [s for doc in candidates for s in self.limits.scopes_of(doc)]
        # a scope of one slot has nothing to choose: its slot is tried, and the unique
        # index refuses it if held (refused() learns that): no read
        choose = [s for s in scopes if s.capacity > 1]
        plan = assign(candidates, self.limits, await held_slots(collection, choose))
        self.waited += plan.blocked
        return self.learn(plan), plan.blocked + skipped

    def _waits(self, doc: Mapping[str, Any], full: set[str]) -> bool:
        """``doc`` is under a scope of one slot known full whose slot it does not hold
        already (a recovery claim keeps its own: never held back by the scope it fills).
        A scope of more slots is not guessed: the plan reads which of its slots are held."""
        return any(
            scope.name in full and scope.capacity == 1 and not scope.owns(doc.get(scope.field))
            for scope in self.limits.scopes_of(doc)
        )

    def refused(self, slots: Iterable[Mapping[str, str]]) -> None:
        """The server refused these slots (held by documents the plan did not see): their
        scopes are full, left out of the next reads like those the plan found full."""
        until = time.monotonic() + FULL_MAX_AGE
        for taken in slots:
            self.refused_total += 1
            for slot in taken.values():
                scope = self._scopes.get(slot)
                if scope is not None:
                    self._full[scope.name] = (scope, until)

    def learn(self, plan: Plan) -> dict[str, dict[str, str]]:
        self._scopes = plan.scopes
        until = time.monotonic() + FULL_MAX_AGE
        for name, scope in plan.full.items():
            self._full[name] = (scope, until)
        taken = {}
        for doc, slots in plan.take:
            key = dep_key(doc["_id"])
            taken[key] = slots
            if slots:
                if len(self._holding) >= MAX_HOLDING:
                    self._holding.clear()  # only a hint: a full scope then ages out
                self._holding[key] = [s.rpartition("#")[0] for s in slots.values()]
        return taken

    def freed(self, doc_ids: Iterable[Any]) -> None:
        """This agent's documents left ``processing``: their scopes have room again."""
        for doc_id in doc_ids:
            for name in self._holding.pop(dep_key(doc_id), ()):
                self._full.pop(name, None)
