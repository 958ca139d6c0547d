"""Console sessions against the tokens as they are now, on every agent of the fleet: signing
out ends a session everywhere (a copied cookie included), a token that lost its admin role
or its name ends its sessions, and wrong tokens are throttled, logged and counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import structlog

from pulling_agent.console.session import COOKIE
from tests.integration.test_console import sign_in

SECRET = "ops-token-0123456789abcdef"
LOCAL = {"api_host": "127.0.0.1"}


def copied(api: httpx.AsyncClient, csrf: str) -> dict[str, str]:
    """The signed-in browser's cookie and CSRF token, as someone who copied them sends."""
    return {"Cookie": f"{COOKIE}={api.cookies.get(COOKIE)}", "X-CSRF-Token": csrf}


async def test_signing_out_ends_the_session_on_every_agent(start_node: Callable[..., Any]) -> None:
    one = await start_node(api_tokens=f"ops:{SECRET}", agent_id="agent-1", **LOCAL)
    two = await start_node(api_tokens=f"ops:{SECRET}", agent_id="agent-2", **LOCAL)
    stolen = copied(one, await sign_in(one, SECRET))
    assert (await two.get("/ui/partials/agents", headers=stolen)).status_code == 200
    out = await one.post("/ui/logout")
    assert out.status_code == 303
    assert "samesite=strict" in out.headers["set-cookie"].lower(), "as strict as the session's"
    one.cookies.clear()
    for api in (one, two):
        assert (await api.get("/ui/partials/agents", headers=stolen)).status_code == 401
        pause = await api.post("/ui/actions/cluster/pause", json={"reason": "x"}, headers=stolen)
        assert pause.status_code == 401, "a copy of the cookie is signed out too"


async def test_a_session_ends_when_its_token_loses_its_role_or_name(
    start_node: Callable[..., Any],
) -> None:
    before = await start_node(api_tokens=f"ops:{SECRET}:admin", agent_id="before", **LOCAL)
    session = copied(before, await sign_in(before, SECRET))
    demoted = await start_node(api_tokens=f"ops:{SECRET}:read", agent_id="demoted", **LOCAL)
    pause = await demoted.post("/ui/actions/cluster/pause", json={"reason": "x"}, headers=session)
    assert pause.status_code == 401, "the old admin cookie no longer pauses the fleet"
    renamed = await start_node(api_tokens=f"ops-2:{SECRET}", agent_id="renamed", **LOCAL)
    assert (await renamed.get("/ui/partials/agents", headers=session)).status_code == 401
    same = await start_node(api_tokens=f"ops:{SECRET}", agent_id="same", **LOCAL)
    assert (await same.get("/ui/partials/agents", headers=session)).status_code == 200


async def test_wrong_tokens_are_throttled_logged_and_counted(
    start_node: Callable[..., Any],
) -> None:
    api = await start_node(api_tokens=f"ops:{SECRET}", **LOCAL)
    wrong = {"Authorization": "Bearer " + "x" * 24}
    with structlog.testing.capture_logs() as logs:
        answers = [
            (await api.get("/api/agent/state", headers=wrong)).status_code for _ in range(12)
        ]
    assert answers[:10] == [403] * 10 and answers[10] == 403 and answers[11] == 429
    held = await api.get("/api/agent/state", headers={"Authorization": f"Bearer {SECRET}"})
    assert held.status_code == 429 and int(held.headers["retry-after"]) >= 1, (
        "held off whatever it sends: else the answer would tell which guess was right"
    )
    failed = [e for e in logs if e.get("action") == "auth.failed"]
    assert len(failed) == 1 and failed[0]["client"] == "127.0.0.1", "one line a minute"
    metrics = (await api.get("/metrics")).text
    assert 'pulling_agent_auth_failures_total{kind="token"} 11.0' in metrics


async def test_wrong_sign_ins_are_throttled_too(start_node: Callable[..., Any]) -> None:
    api = await start_node(api_tokens=f"ops:{SECRET}", **LOCAL)
    codes = [
        (await api.post("/ui/login", data={"token": f"guess-{n:020d}"})).status_code
        for n in range(12)
    ]
    assert codes[:11] == [403] * 11 and codes[11] == 429
    right = await api.post("/ui/login", data={"token": SECRET})
    assert right.status_code == 429 and COOKIE not in right.cookies
    assert (
        'pulling_agent_auth_failures_total{kind="sign_in"} 11.0' in (await api.get("/metrics")).text
    )
