"""The HTTP API over a real agent node (nx-27017 or TEST_MONGODB_URI), in process."""

from __future__ import annotations

import httpx
import pytest

from pulling_agent.bootstrap import Node
from pulling_agent.runtime.state import AgentState
from tests.conftest import async_wait_until
from tests.integration.conftest import OTHER, READER, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": f"Bearer {READER}"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/cluster/pause",
        "/api/cluster/resume",
        "/api/cluster/shutdown",
        "/api/agent/pause",
        "/api/agent/resume",
    ],
)
async def test_mutating_endpoints_need_a_valid_token(
    api: httpx.AsyncClient, node: Node, path: str
) -> None:
    missing = await api.post(path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "bearer" in missing.json()["detail"].lower()
    wrong = await api.post(path, headers={"Authorization": "Bearer not-a-valid-token-at-all"})
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "token not accepted"}
    basic = await api.post(path, headers={"Authorization": "Basic b3BzOm9wcw=="})
    assert basic.status_code == 401
    # nothing happened: auth is checked before the action
    assert (await api.get("/api/cluster/control-state", headers=READ)).json()["version"] == 0
    assert (await api.get("/api/agent/state", headers=READ)).json()["paused_by"] == []


async def test_cluster_pause_records_the_token_name_not_the_callers_claim(
    api: httpx.AsyncClient, node: Node
) -> None:
    response = await api.post(
        "/api/cluster/pause",
        params={"reason": "Maintenance", "updated_by": "admin", "wait": 10},
        headers=AUTH,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["control"]["updated_by"] == "ops"
    assert body["control"]["note"] == "admin"
    assert body["acks"]["complete"] is True
    assert body["acks"]["acknowledged"] == [node.agent.settings.agent_id]
    await async_wait_until(lambda: node.agent.state is AgentState.PAUSED)
    state = (await api.get("/api/cluster/control-state", headers=READ)).json()
    assert {k: state[k] for k in ("command", "version", "reason", "updated_by")} == {
        "command": "pause",
        "version": 1,
        "reason": "Maintenance",
        "updated_by": "ops",
    }
    assert state["watch_mode"] in ("polling", "change_streams")
    agent = (await api.get("/api/agent/state", headers=READ)).json()
    assert agent["state"] == "paused"
    assert agent["paused_by"][0]["source"] == "cluster"
    assert agent["paused_by"][0]["by"] == "ops"
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["state"] == "paused"
    history = (await api.get("/api/cluster/history", headers=READ)).json()
    assert history[0]["updated_by"] == "ops"


async def test_agent_pause_is_per_agent_and_explains_itself(
    api: httpx.AsyncClient, node: Node
) -> None:
    response = await api.post("/api/agent/pause", params={"reason": "debugging"}, headers=AUTH)
    assert response.status_code == 200
    await async_wait_until(lambda: node.agent.state is AgentState.PAUSED)
    holders = (await api.get("/api/agent/state", headers=READ)).json()["paused_by"]
    assert [(h["source"], h["reason"], h["by"]) for h in holders] == [("api", "debugging", "ops")]
    other = {"Authorization": f"Bearer {OTHER}"}
    assert (await api.post("/api/agent/resume", headers=other)).status_code == 200
    await async_wait_until(lambda: node.agent.state is AgentState.RUNNING)
    assert (await api.get("/readyz")).status_code == 200


async def test_stats_status_and_metrics(api: httpx.AsyncClient, node: Node) -> None:
    await async_wait_until(lambda: _live(api), what="the agent's heartbeat in the registry")
    stats = (await api.get("/api/cluster/stats", headers=READ)).json()
    [agent] = stats["agents"]
    assert agent["agent_id"] == node.agent.settings.agent_id
    assert agent["state"] == "running"
    assert "backlog" in stats
    assert "fleet_throughput_per_min" in stats
    mongo = (await api.get("/api/mongo/status", headers=READ)).json()
    assert mongo["connected"] is True
    assert mongo["server"] in ("standalone", "replica_set", "mongos")
    metrics = (await api.get("/metrics")).text
    assert 'pulling_agent_state{state="running"} 1.0' in metrics
    assert "pulling_agent_processed_total" in metrics
    assert "pulling_agent_handler_seconds" in metrics
    assert "pulling_agent_batches_closed_total 0.0" in metrics
    assert 'pulling_agent_backlog{status="waiting"}' in metrics
    assert (await api.get("/healthz")).json() == {"status": "alive", "state": "running"}
    spec = (await api.get("/openapi.json")).json()
    assert "/api/cluster/pause" in spec["paths"]


async def _live(api: httpx.AsyncClient) -> bool:
    return bool((await api.get("/api/cluster/stats", headers=READ)).json()["agents"])


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("POST", "/api/cluster/pause", {"wait": "soon"}),
        ("POST", "/api/cluster/pause", {"wait": "-1"}),
        ("POST", "/api/cluster/pause", {"reason": "x" * 600}),
        ("GET", "/api/cluster/history", {"limit": "0"}),
        ("GET", "/api/nope", {}),
        ("DELETE", "/api/cluster/pause", {}),
    ],
)
async def test_malformed_requests_get_json_4xx(
    api: httpx.AsyncClient, method: str, path: str, params: dict[str, str]
) -> None:
    response = await api.request(method, path, params=params, headers=AUTH)
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()


async def test_no_secret_in_any_response(api: httpx.AsyncClient, node: Node) -> None:
    await api.post("/api/cluster/pause", params={"reason": "r"}, headers=AUTH)
    bodies = []
    for path in (
        "/api/cluster/control-state",
        "/api/cluster/stats",
        "/api/agent/state",
        "/api/mongo/status",
        "/metrics",
        "/openapi.json",
        "/api/cluster/history",
    ):
        bodies.append((await api.get(path, headers=READ)).text)
    text = "\n".join(bodies)
    assert TOKEN not in text
    assert OTHER not in text
    assert READER not in text
