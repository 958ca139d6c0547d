"""Who may call what: roles with tokens, and a token-less API that only local, non-browser
callers can use. Every /api route is found by walking the app, so a new route cannot slip
past these tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from pulling_agent.config import load_settings
from pulling_agent.errors import ConfigError

ADMIN = "ops-token-0123456789abcdef"
READER = "grafana-token-0123456789ab"
Client = AsyncMongoClient[dict[str, Any]]


async def _noop(doc: dict[str, Any]) -> None:
    return None


async def api_routes(api: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Every /api operation the app publishes (its OpenAPI document is generated from the
    routes themselves)."""
    spec = (await api.get("/openapi.json")).json()
    return [
        (method.upper(), path.replace("{job_id}", "no-such-job"))
        for path, operations in spec["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_api_route_needs_a_token_and_changes_need_admin(
    start_node: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # one wrong token per route, from one client: more than the throttle lets through
    monkeypatch.setattr("pulling_agent.api.throttle.LIMIT", 1_000)
    api = await start_node(api_tokens=f"ops:{ADMIN},grafana:{READER}:read", api_host="127.0.0.1")
    routes = await api_routes(api)
    assert len([r for r in routes if r[0] == "GET"]) >= 7
    assert len([r for r in routes if r[0] == "POST"]) >= 8
    for method, path in routes:
        if path == "/api/cluster/shutdown":
            continue  # it would stop the agent under test; its auth is the same dependency
        missing = await api.request(method, path)
        assert missing.status_code == 401, (method, path)
        wrong = await api.request(method, path, headers=bearer("x" * 24))
        assert wrong.status_code == 403, (method, path)
        as_reader = await api.request(method, path, headers=bearer(READER))
        if method == "GET":
            assert as_reader.status_code in (200, 404), (method, path, as_reader.text)
        else:
            assert as_reader.status_code == 403, (method, path)
            assert "read role" in as_reader.json()["detail"]
    admin_pause = await api.post("/api/agent/pause", headers=bearer(ADMIN))
    assert admin_pause.status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert (await api.get(open_path)).status_code in (200, 503), open_path
    spec = (await api.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        if path.startswith("/api/"):
            for operation in operations.values():
                assert operation.get("security") == [{"HTTPBearer": []}], path


async def test_metrics_can_require_a_token(start_node: Callable[..., Any]) -> None:
    api = await start_node(
        api_tokens=f"ops:{ADMIN},grafana:{READER}:read",
        api_host="127.0.0.1",
        metrics_require_token=True,
    )
    assert (await api.get("/metrics")).status_code == 401
    assert (await api.get("/metrics", headers=bearer(READER))).status_code == 200
    assert (await api.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"host": "127.0.0.1:8000"}, True),
        ({"host": "localhost"}, True),
        ({"host": "[::1]:8000"}, True),
        ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}, True),
        ({"host": "localhost:8000", "origin": "http://localhost:8000"}, True),
        # another local server's page (a dev server on another port) is another origin
        ({"host": "127.0.0.1:8000", "origin": "http://localhost:3000"}, False),
        ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:3000"}, False),
        ({"host": "evil.example"}, False),
        ({"host": "127.attacker.example"}, False),
        ({"host": "127.0.0.1.nip.io:8000"}, False),
        ({"host": "127.0.0.1:8000", "origin": "https://evil.example"}, False),
        ({"host": "127.0.0.1:8000", "origin": "null"}, False),
    ],
)
async def test_a_token_less_api_answers_local_callers_only(
    start_node: Callable[..., Any], headers: dict[str, str], allowed: bool
) -> None:
    api = await start_node()
    response = await api.get("/api/agent/state", headers=headers)
    assert (response.status_code == 200) is allowed, response.text
    if not allowed:
        assert response.status_code == 403 and "detail" in response.json()


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"content-type": "text/plain"}, False),  # a browser's cross-site "simple" POST
        ({"content-type": "application/x-www-form-urlencoded"}, False),
        ({}, False),
        ({"content-type": "application/json"}, True),
        ({"x-pulling-agent": "curl"}, True),
    ],
)
async def test_a_token_less_api_refuses_posts_a_browser_could_send_cross_site(
    start_node: Callable[..., Any], headers: dict[str, str], allowed: bool
) -> None:
    api = await start_node()
    response = await api.post("/api/cluster/pause", headers=headers, content=b"")
    assert (response.status_code == 200) is allowed, response.text
    state = (await api.get("/api/cluster/control-state")).json()
    assert state["version"] == (1 if allowed else 0), "nothing happens before the check"


def test_token_roles_parse_and_bad_roles_are_refused() -> None:
    base = {"mongodb_uri": "mongodb://h/", "mongodb_database": "d", "mongodb_collection": "c"}
    tokens = load_settings(**base, api_tokens=f"ops:{ADMIN},grafana:{READER}:READ").tokens
    assert {p.name: p.role.value for p in tokens.values()} == {"ops": "admin", "grafana": "read"}
    with pytest.raises(ConfigError, match=r"API_TOKENS is invalid: entry 1 .* unknown role") as bad:
        load_settings(**base, api_tokens=f"ops:{ADMIN}:root")
    assert ADMIN not in str(bad.value)
    with pytest.raises(ConfigError, match=r"API_HOST=127\.attacker\.example needs API_TOKENS"):
        load_settings(**base, api_host="127.attacker.example")


def test_ctl_inside_a_pod_uses_the_first_admin_token() -> None:
    from pulling_agent.tokens import admin_token

    assert admin_token(f"grafana:{READER}:read,ops:{ADMIN}") == ADMIN
    assert admin_token(f"grafana:{READER}:read") is None
    assert admin_token("garbage") is None


async def test_the_agent_that_serves_a_command_applies_it_at_once(
    start_node: Callable[..., Any],
) -> None:
    """Before: on a standalone (polling every CONTROL_POLLING_INTERVAL) the serving agent
    itself applied the command only at its next poll, and ?wait=2 reported it pending."""
    api = await start_node(control_polling_interval=3600)
    headers = {"X-Pulling-Agent": "test"}
    response = await api.post("/api/cluster/pause", params={"wait": 2}, headers=headers)
    acks = response.json()["acks"]
    assert acks["complete"] is True and acks["acknowledged"] == ["agent-test"]
    state = (await api.get("/api/agent/state")).json()
    assert state["state"] == "paused"
    again = await api.post("/api/cluster/resume", headers=headers)
    assert again.status_code == 200
    control = (await api.get("/api/cluster/control-state")).json()
    assert control["timestamp"].endswith("+00:00"), "ISO-8601 with its zone"


async def test_malformed_job_and_registry_documents_do_not_fail_the_api(
    start_node: Callable[..., Any], client: Client, db_name: str
) -> None:
    api = await start_node()
    db = client[db_name]
    await db["agent_jobs"].insert_many(
        [
            {"_id": "broken", "definition": "not a dict", "schedule": [1, 2], "paused": True},
            {"_id": ObjectId(), "definition": {"trigger": 5}},
        ]
    )
    await db["agent_registry"].insert_one(
        {
            "_id": "ghost",
            "heartbeat_at": datetime.now(UTC) + timedelta(hours=1),
            "throughput_per_min": "fast",
            "version_seen": "v9",
            "jobs": "everything",
        }
    )
    listed = await api.get("/api/jobs")
    assert listed.status_code == 200, listed.text
    assert {j["id"] for j in listed.json()} >= {"broken"}
    resumed = await api.post("/api/jobs/broken/resume", headers={"X-Pulling-Agent": "t"})
    assert resumed.status_code == 409 and "malformed" in resumed.json()["detail"]
    stats = await api.get("/api/cluster/stats")
    assert stats.status_code == 200, stats.text
    waited = await api.post(
        "/api/cluster/pause", params={"wait": 0.5}, headers={"X-Pulling-Agent": "t"}
    )
    assert waited.status_code == 200
    assert "ghost" in waited.json()["acks"]["pending"]
    assert "CONTROL_POLLING_INTERVAL" in waited.json()["acks"]["hint"]


async def test_documents_can_be_cancelled_through_the_api(
    start_node: Callable[..., Any], client: Client, db_name: str
) -> None:
    api = await start_node(api_tokens=f"ops:{ADMIN},grafana:{READER}:read", api_host="127.0.0.1")
    paused = await api.post("/api/agent/pause", headers=bearer(ADMIN))  # keeps it pending
    assert paused.status_code == 200
    oid = ObjectId()
    await client[db_name]["work"].insert_many([{"_id": oid, "status": "pending"}])
    as_reader = await api.post(f"/api/documents/{oid}/cancel", headers=bearer(READER))
    assert as_reader.status_code == 403
    done = await api.post(f"/api/documents/{oid}/cancel", headers=bearer(ADMIN))
    assert done.json() == {"cancelled": [str(oid)], "requested": [], "not_found": []}
    doc = await client[db_name]["work"].find_one({"_id": oid})
    assert doc is not None
    assert (doc["status"], doc["cancel_reason"]) == ("cancelled", "cancelled by api:ops")
    missing = await api.post("/api/documents/nope/cancel", headers=bearer(ADMIN))
    assert missing.json()["not_found"] == ["nope"]
