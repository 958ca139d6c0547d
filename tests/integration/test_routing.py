"""Routing by type: an agent claims only the types it runs (in the claim query itself),
dispatches each to its handler with per-type limits, and doctor names types nobody runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pulling_agent.config import load_settings
from pulling_agent.errors import ConfigError
from pulling_agent.queue.doctor import unserved_types
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.queue.model import ClaimKind, claim_scope
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.runtime.handlers import HandlerRunner, TypedHandlers
from pulling_agent.work import Fail

Client = AsyncMongoClient[dict[str, Any]]
BASE = {"mongodb_uri": "mongodb://h/", "mongodb_database": "d", "mongodb_collection": "c"}
DOCS = [
    {"_id": 1, "status": "pending", "type": "email"},
    {"_id": 2, "status": "pending", "type": "invoice"},
    {"_id": 3, "status": "pending", "type": "report"},
    {"_id": 4, "status": "pending"},
    {"_id": 5, "status": "pending", "type": ["email"]},
]


def test_settings_for_routing() -> None:
    settings = load_settings(
        **BASE,
        handlers="email=m:send, invoice=m:bill",
        type_concurrency="invoice=2",
        handler="m:default",
    )
    assert settings.handler_map == {"email": "m:send", "invoice": "m:bill"}
    assert settings.type_limits == {"invoice": 2}
    assert claim_scope(settings.type_field, settings.served_types) == {
        "type": {"$in": ["email", "invoice", None]}
    }
    assert claim_scope("type", load_settings(**BASE).served_types) == {}
    for bad, message in [
        ({"handlers": "email"}, "HANDLERS is invalid: entry 1"),
        ({"handlers": "a=m:f", "type_concurrency": "b=2"}, "TYPE_CONCURRENCY names 'b'"),
        ({"handlers": "a=m:f", "type_concurrency": "a=0"}, "whole number"),
        ({"handlers": "a=m:f", "type_rate_limit": "b=2"}, "TYPE_RATE_LIMIT names 'b'"),
        ({"handlers": "a=m:f", "type_rate_limit": "a=0"}, "above 0"),
        ({"handlers": "a=m:f", "type_rate_limit": "a=nan"}, "above 0"),
        ({"handlers": "a=m:f", "type_rate_limit": "a=1e9"}, "above 0"),
        ({"type_field": "status"}, "TYPE_FIELD is invalid"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_settings(**BASE, **bad)


@pytest.mark.parametrize("kind", ["memory", "mongo"])
async def test_an_agent_claims_only_the_types_it_runs(
    kind: str, client: Client, db_name: str
) -> None:
    scope = {"type": {"$in": ["email", "invoice", None]}}
    if kind == "memory":
        store: Any = MemoryWorkStore(DOCS, scope=scope)
    else:
        collection = client[db_name]["work"]
        await collection.insert_many([dict(d) for d in DOCS])
        store = MongoWorkStore(collection, scope=scope)
    claims = await store.claim("a", 10, 30, datetime.now(UTC), list(ClaimKind))
    # MongoDB's $in matches an array's elements: ["email"] is claimed (and its handler
    # lookup fails it with a clear message); "report" stays for an agent that runs it
    assert sorted(c.doc_id for c in claims) == [1, 2, 4, 5]
    await client.drop_database(db_name)


async def test_dispatch_by_type_with_per_type_limits() -> None:
    running = {"invoice": 0}
    peak = {"invoice": 0}
    seen: list[tuple[str, Any]] = []

    async def invoice(doc: dict[str, Any]) -> None:
        running["invoice"] += 1
        peak["invoice"] = max(peak["invoice"], running["invoice"])
        await asyncio.sleep(0.01)
        running["invoice"] -= 1
        seen.append(("invoice", doc["_id"]))

    async def email(doc: dict[str, Any]) -> None:
        seen.append(("email", doc["_id"]))

    async def default(doc: dict[str, Any]) -> None:
        seen.append(("default", doc["_id"]))

    typed = TypedHandlers(
        {"invoice": HandlerRunner(invoice, 1, None), "email": HandlerRunner(email, 1, None)},
        HandlerRunner(default, 1, None),
        "type",
        {"invoice": 2},
    )
    docs = [{"_id": i, "type": "invoice"} for i in range(6)] + [
        {"_id": 10, "type": "email"},
        {"_id": 11},
    ]
    await asyncio.gather(*(typed(d) for d in docs))
    assert peak["invoice"] == 2, "at most TYPE_CONCURRENCY invoices at once"
    assert ("email", 10) in seen and ("default", 11) in seen
    with pytest.raises(Fail, match="no handler for type='sms'"):
        await typed({"_id": 12, "type": "sms"})
    typed.close()


async def test_doctor_names_types_no_live_agent_runs(
    client: Client, db_name: str, tmp_path: Path
) -> None:
    collection = client[db_name]["work"]
    await collection.insert_many([dict(d) for d in DOCS[:4]])
    routed: list[dict[str, Any]] = [{"_id": "a1", "types": ["email", "invoice"]}]
    unserved = await unserved_types(collection, routed, "type")
    assert unserved == {"report": 1, "(no type)": 1}
    everyone: list[dict[str, Any]] = [*routed, {"_id": "a2", "types": None}]
    assert await unserved_types(collection, everyone, "type") == {}
    assert await unserved_types(collection, [], "type") == {}, "no agent: nothing to compare"
    await client.drop_database(db_name)
