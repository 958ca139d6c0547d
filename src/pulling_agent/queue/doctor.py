"""``pulling-agent doctor``: the documents agents will never process as they stand.

Reads every document that is not finished (``status`` other than processed or failed,
missing included) with only the fields the agent owns, and explains each problem
:func:`~pulling_agent.queue.documents.diagnose` finds, with a suggested fix. One pass over
the unfinished documents: on a large backlog it takes as long as reading their ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from pulling_agent.queue import waits
from pulling_agent.queue import workflow as wf
from pulling_agent.queue.documents import diagnose
from pulling_agent.queue.limits import Limits
from pulling_agent.queue.model import FINISHED, Document, Problem, Status
from pulling_agent.queue.occupancy import (
    Stale,
    fleet_types,
    held_back,
    occupancy,
    slots_indexed,
)
from pulling_agent.text import safe_text

FIELDS = {"status": 1, "attempts": 1, "available_at": 1, "lease": 1, **waits.FIELDS}
MAX_WAITING = 100_000  # waiting documents examined for cycles and missing dependencies
UNFINISHED = {"status": {"$nin": [s.value for s in FINISHED]}}


@dataclass(frozen=True, slots=True)
class Finding:
    doc_id: Any
    problems: tuple[Problem, ...]


@dataclass(slots=True)
class Examination:
    scanned: int = 0
    found: int = 0
    findings: list[Finding] = field(default_factory=list)  # the first ``limit`` of them
    by_field: Counter[str] = field(default_factory=Counter)
    unserved: dict[str, int] = field(default_factory=dict)  # pending by type no agent runs
    retention: dict[str, float | None] = field(default_factory=dict)  # status -> seconds
    skewed: dict[str, float] = field(default_factory=dict)  # agent -> its node's clock offset
    stale_slots: list[Stale] = field(default_factory=list)  # limit slots nobody gives back
    held_back: dict[str, int] = field(default_factory=dict)  # pending by type of limit 0
    limit_disagreements: list[str] = field(default_factory=list)  # agents' limits differ

    @property
    def troubled(self) -> bool:
        """Anything found (the exit code)."""
        limits = self.stale_slots or self.held_back or self.limit_disagreements
        return bool(self.found or self.unserved or limits)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "found": self.found,
            "by_field": dict(self.by_field),
            "unserved_types": self.unserved,
            "retention_seconds": self.retention,
            "skewed_agents": self.skewed,
            "held_back_types": self.held_back,
            "limit_disagreements": self.limit_disagreements,
            "stale_slots": [s.as_dict() for s in self.stale_slots],
            "documents": [
                {
                    "_id": f.doc_id,
                    "problems": [
                        {
                            "field": p.field,
                            "value_type": p.value_type,
                            "reason": p.reason,
                            "fix": p.fix,
                        }
                        for p in f.problems
                    ],
                }
                for f in self.findings
            ],
        }


def examine_documents(
    docs: list[Document], now: datetime, max_attempts: int, limit: int
) -> Examination:
    """Pure: the examination of ``docs`` (for tests and for :func:`examine`)."""
    result = Examination()
    for doc in docs:
        _add(result, doc, now, max_attempts, limit)
    return result


def _add(result: Examination, doc: Document, now: datetime, max_attempts: int, limit: int) -> None:
    result.scanned += 1
    problems = diagnose(doc, now, max_attempts)
    if not problems:
        return
    result.found += 1
    result.by_field.update(p.field for p in problems)
    if len(result.findings) < limit:
        result.findings.append(Finding(doc.get("_id"), tuple(problems)))


async def examine(
    collection: AsyncCollection[Document], now: datetime, max_attempts: int, limit: int
) -> Examination:
    result = Examination()
    waiting: list[Document] = []
    async for doc in collection.find(UNFINISHED, FIELDS, batch_size=1_000):
        _add(result, doc, now, max_attempts, limit)
        if doc.get("status") == Status.WAITING and len(waiting) < MAX_WAITING:
            waiting.append(doc)
    deps = {key: dep for doc in waiting for key, dep in wf.waits_of(doc).items()}
    existing: dict[str, Any] = {}
    if deps:
        cursor = collection.find({"_id": {"$in": list(deps.values())}}, {"status": 1})
        existing = {wf.dep_key(d["_id"]): d.get("status") async for d in cursor}
    for doc_id, problems in waits.examine(waiting, existing).items():
        result.found += 1
        result.by_field.update(p.field.split(".", 1)[0] for p in problems)
        if len(result.findings) < limit:
            result.findings.append(Finding(doc_id, tuple(problems)))
    return result


async def unserved_types(
    collection: AsyncCollection[Document], live_agents: list[Document], type_field: str
) -> dict[str, int]:
    """Pending documents by ``TYPE_FIELD`` value that no live agent claims (agents with
    ``HANDLERS`` claim only their types; an agent without serves every type). With no
    live agent at all there is nothing to compare with: none is reported."""
    if not live_agents:
        return {}
    served: set[Any] = set()
    for agent in live_agents:
        types = agent.get("types")
        if types is None:
            return {}
        served.update(t for t in types if isinstance(t, str | None))
    pipeline: list[Document] = [
        {"$match": {"status": Status.PENDING.value}},
        {"$group": {"_id": f"${type_field}", "n": {"$sum": 1}}},
    ]
    cursor = await collection.aggregate(pipeline)
    unserved = {}
    async for row in cursor:
        kind = row["_id"]
        if isinstance(kind, str | None) and kind not in served:
            unserved["(no type)" if kind is None else safe_text(kind, 100)] = int(row["n"])
    return unserved


async def examine_limits(
    result: Examination,
    collection: AsyncCollection[Document],
    live_agents: list[Document],
    limits: Limits,
    now: datetime,
    lease_seconds: float,
) -> None:
    """The fleet-wide limits' findings: agents that disagree on a type's limit, pending
    documents of types whose limit is 0, and slots nobody gives back. The live agents'
    published limits are the fleet's; ``limits`` (this environment's) only when no live
    agent publishes any."""
    fleet = fleet_types(live_agents)
    result.limit_disagreements = fleet.disagreements
    types = fleet.agreed if fleet.published else dict(limits.fleet)
    result.held_back = await held_back(collection, types, limits.type_field)
    if await slots_indexed(collection):
        held = await occupancy(collection, limits, now, lease_seconds, waiting=False)
        result.stale_slots = held.stale
