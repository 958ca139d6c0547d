"""The web console over a real agent node (nx-27017 or TEST_MONGODB_URI), in process:
every view shows the real figures, actions change the documents and the fleet, and the
console authorises exactly as the API (sessions from tokens, admin for actions, CSRF,
same origin). The same in a real browser: tests/system/test_console_browser.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from bson import json_util
from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import Node
from pulling_agent.console.session import COOKIE, Sessions
from pulling_agent.queue.limits import key_text
from pulling_agent.runtime.state import AgentState
from pulling_agent.tokens import Role
from tests.conftest import async_wait_until
from tests.deviations import DATE_MATCH_IN_AGGREGATE, nx_deviation
from tests.integration.conftest import READER
from tests.integration.conftest import TOKEN as ADMIN

Client = AsyncMongoClient[dict[str, Any]]
HOSTILE = "<script>alert('x')</script>\x1b[2J\u202e"


async def sign_in(api: httpx.AsyncClient, token: str) -> str:
    """Sign in; returns the page's CSRF token."""
    response = await api.post("/ui/login", data={"token": token, "next": "overview"})
    assert response.status_code == 303, response.text
    page = await api.get("/ui/overview")
    assert page.status_code == 200
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def cell(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert found is not None, element_id
    return found.group(1)


async def failed_docs(work: Any, n: int, **extra: Any) -> None:
    now = datetime.now(UTC)
    await work.insert_many(
        [
            {
                "status": "failed",
                "attempts": 5,
                "failed_at": now - timedelta(seconds=i),
                "error": {
                    "type": "ValueError" if i % 2 else "KeyError",
                    "message": f"m{i}",
                    **extra,
                },
            }
            for i in range(n)
        ]
    )


async def test_views_need_a_session_and_a_valid_token(api: httpx.AsyncClient) -> None:
    page = await api.get("/ui/overview")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=overview"
    partial = await api.get("/ui/partials/overview")
    assert partial.status_code == 401
    wrong = await api.post("/ui/login", data={"token": "not-a-token-at-all-000"})
    assert wrong.status_code == 403 and "not accepted" in wrong.text
    assert COOKIE not in wrong.cookies
    forced = await api.post(
        "/ui/login", data={"token": READER}, headers={"Origin": "http://evil.example"}
    )
    assert forced.status_code == 403 and COOKIE not in forced.cookies, "no login CSRF"
    await sign_in(api, READER)
    cookie = api.cookies.get(COOKIE) or ""
    assert READER not in cookie and ADMIN not in cookie, "the cookie never holds the token"


async def _overview(api: httpx.AsyncClient, node: Node, client: Client) -> str:
    """The overview partial over a known backlog (the agent paused, so it stays)."""
    node.agent.request_pause(*_api_pause())
    await async_wait_until(lambda: node.agent.state is AgentState.PAUSED)
    work = client[node.agent.settings.mongodb_database]["work"]
    await work.insert_many([{"status": "pending", "n": i} for i in range(7)])
    due = datetime.now(UTC) - timedelta(minutes=1)
    await work.insert_many([{"status": "pending", "available_at": due, "k": i} for i in range(2)])
    await failed_docs(work, 3)
    await work.insert_one({"status": "processed"})
    await sign_in(api, READER)
    return (await api.get("/ui/partials/overview")).text


async def test_the_overview_shows_the_real_backlog(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    html = await _overview(api, node, client)
    assert cell(html, "count-pending") == "9"
    assert cell(html, "count-failed") == "3"
    assert cell(html, "count-processed") == "1"
    assert cell(html, "live-agents") == "1"


@nx_deviation(DATE_MATCH_IN_AGGREGATE)
async def test_the_overview_counts_due_retries(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    assert cell(await _overview(api, node, client), "count-due") == "2"


def _api_pause() -> tuple[Any, str, str]:
    from pulling_agent.control.requests import Source

    return Source.API, "test", "tester"


async def test_hostile_strings_are_shown_as_text(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    work = client[node.agent.settings.mongodb_database]["work"]
    error = {"type": HOSTILE, "message": HOSTILE, "traceback": HOSTILE}
    await work.insert_one({"_id": HOSTILE, "status": "failed", "error": error})
    await sign_in(api, READER)
    for response in (
        await api.get("/ui/dlq"),
        await api.get("/ui/document", params={"id": HOSTILE}),
    ):
        html = response.text
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert" in html
        assert "\x1b" not in html and "\u202e" not in html
        assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_the_dead_letter_pages_by_range_and_filters(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    work = client[node.agent.settings.mongodb_database]["work"]
    await failed_docs(work, 120)
    await sign_in(api, READER)
    seen: list[str] = []
    url: str | None = "/ui/partials/dlq"
    pages = 0
    while url is not None:
        html = (await api.get(url)).text
        ids = re.findall(r'name="ids" value="([^"]+)"', html)
        seen += ids
        pages += 1
        found = re.search(r'id="next-page" href="([^"]+)"', html)
        url = (
            found.group(1).replace("&amp;", "&").replace("/ui/dlq", "/ui/partials/dlq")
            if found
            else None
        )
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    keyed = (await api.get("/ui/partials/dlq", params={"type": "KeyError"})).text
    assert len(re.findall(r'name="ids"', keyed)) == 50, "first page of 60 KeyErrors"
    text = (await api.get("/ui/partials/dlq", params={"q": "M11"})).text
    assert len(re.findall(r'name="ids"', text)) == 11, "m11 and m110-m119, case-insensitive"
    none = (await api.get("/ui/partials/dlq", params={"q": ".*"})).text
    assert 'name="ids"' not in none, "the text is matched literally, not as a regex"


async def test_requeue_from_the_dead_letter_needs_admin_and_csrf(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    node.agent.request_pause(*_api_pause())  # requeued documents stay pending to be counted
    await async_wait_until(lambda: node.agent.state is AgentState.PAUSED)
    work = client[node.agent.settings.mongodb_database]["work"]
    await failed_docs(work, 10)
    html_ids: list[str] = []
    csrf = await sign_in(api, READER)
    html = (await api.get("/ui/partials/dlq")).text
    html_ids = [i.replace("&#34;", '"') for i in re.findall(r'name="ids" value="([^"]+)"', html)]
    body = {"ids": html_ids[:2]}
    read_only = await api.post("/ui/actions/requeue", json=body, headers={"X-CSRF-Token": csrf})
    assert read_only.status_code == 403 and "read role" in read_only.json()["detail"]

    csrf = await sign_in(api, ADMIN)
    no_csrf = await api.post("/ui/actions/requeue", json=body)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
    cross = await api.post(
        "/ui/actions/requeue",
        json=body,
        headers={
            "X-CSRF-Token": csrf,
            "Origin": "http://evil.example",
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert cross.status_code == 403 and "cross-origin" in cross.json()["detail"]
    assert await work.count_documents({"status": "failed"}) == 10, "nothing changed yet"

    done = await api.post("/ui/actions/requeue", json=body, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200 and done.json()["requeued"] == 2
    chosen = [json_util.loads(i) for i in html_ids[:2]]
    assert {d["status"] async for d in work.find({"_id": {"$in": chosen}})} == {"pending"}

    preview = await api.get("/ui/partials/requeue-preview", params={"type": "KeyError"})
    keyerrors = preview.json()["count"]
    assert keyerrors == await work.count_documents({"status": "failed", "error.type": "KeyError"})
    matching = await api.post(
        "/ui/actions/requeue",
        json={"all_matching": True, "type": "KeyError"},
        headers={"X-CSRF-Token": csrf},
    )
    assert matching.json()["requeued"] == keyerrors
    assert await work.count_documents({"status": "failed", "error.type": "KeyError"}) == 0
    assert await work.count_documents({"status": "failed", "error.type": "ValueError"}) > 0


async def test_fleet_pause_from_the_console_is_audited_with_the_token_name(
    api: httpx.AsyncClient, node: Node
) -> None:
    csrf = await sign_in(api, ADMIN)
    missing = await api.post(
        "/ui/actions/cluster/pause", json={"reason": " "}, headers={"X-CSRF-Token": csrf}
    )
    assert missing.status_code == 422
    unknown = await api.post(
        "/ui/actions/cluster/explode", json={"reason": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert unknown.status_code == 404
    done = await api.post(
        "/ui/actions/cluster/pause", json={"reason": "maintenance"}, headers={"X-CSRF-Token": csrf}
    )
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["control"]["command"] == "pause" and result["acks"]["complete"]
    assert node.agent.settings.agent_id in result["acks"]["acknowledged"]
    html = (await api.get("/ui/partials/control")).text
    assert cell(html, "control-command") == "pause"
    assert "maintenance" in html and "ops" in html
    assert re.search(r'data-agent="agent-test">.*?class="ack">yes<', html, re.S)


async def test_document_lookup_by_any_id_type_with_the_reasons(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    work = client[node.agent.settings.mongodb_database]["work"]
    await work.insert_many(
        [
            {"_id": 42, "status": "Pending"},
            {
                "_id": "order-7",
                "status": "processed",
                "attempts": 1,
                "result": {"file": "<script>alert(1)</script>.csv"},
            },
            {"_id": "order-8", "status": "processed", "result_error": "too big \x1b[2J"},
            {
                "_id": "traced",
                "status": "processed",
                "trace_context": {"traceparent": TRACEPARENT},
            },
            {"_id": "badly-traced", "status": "processed", "trace_context": {"traceparent": 5}},
        ]
    )
    await sign_in(api, READER)
    typo = (await api.get("/ui/partials/document", params={"id": "42"})).text
    assert cell(typo, "doc-status") == "Pending"
    assert 'id="problems"' in typo and "status" in typo
    done = (await api.get("/ui/partials/document", params={"id": "order-7"})).text
    assert cell(done, "doc-status") == "processed" and 'id="problems"' not in done
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.csv" in cell(done, "doc-result")
    assert "<script>" not in done
    refused = (await api.get("/ui/partials/document", params={"id": "order-8"})).text
    assert cell(refused, "doc-result-error").startswith("too big") and "\x1b" not in refused
    missing = (await api.get("/ui/partials/document", params={"id": "nope"})).text
    assert 'id="not-found"' in missing
    traced = (await api.get("/ui/partials/document", params={"id": "traced"})).text
    assert cell(traced, "doc-trace") == "0af7651916cd43dd8448eb211c80319c", "no TRACE_URL: text"
    assert 'id="doc-trace"' not in done, "no trace_context, no row"
    bad = (await api.get("/ui/partials/document", params={"id": "badly-traced"})).text
    assert 'id="doc-trace"' not in bad


async def test_an_expired_or_forged_session_is_asked_to_sign_in_again(
    api: httpx.AsyncClient, node: Node
) -> None:
    await sign_in(api, ADMIN)
    cookie = api.cookies.get(COOKIE) or ""
    payload, signature = cookie.split(".")
    api.cookies.clear()
    forged = {"Cookie": f"{COOKIE}={payload}x.{signature}"}
    assert (await api.get("/ui/partials/agents", headers=forged)).status_code == 401
    assert (await api.get("/ui/agents", headers=forged)).status_code == 303
    # the agent's own key and token: only the expiry is wrong
    expired, _ = Sessions(node.agent.settings.tokens).issue("ops", Role.ADMIN, now=0, token=ADMIN)
    stale = {"Cookie": f"{COOKIE}={expired}"}
    assert (await api.get("/ui/partials/agents", headers=stale)).status_code == 401


async def test_an_agent_that_stopped_heartbeating_is_shown_lost(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    registry = client[node.agent.settings.mongodb_database]["agent_registry"]
    # silent for longer than three heartbeats, not yet for the registry's TTL (60 s)
    gone = datetime.now(UTC) - timedelta(seconds=30)
    await registry.insert_one({"_id": "old-pod-1", "state": "running", "heartbeat_at": gone})
    await sign_in(api, READER)
    html = (await api.get("/ui/partials/agents")).text
    lost = re.search(r'<tr class="lost" data-agent="old-pod-1">.*?</tr>', html, re.S)
    assert lost is not None and 'class="badge lost"' in lost.group(0)
    # the serving agent is listed too (live or not: its 0.05 s test heartbeat may be late)
    assert 'data-agent="agent-test"' in html


async def test_a_young_fleets_chart_covers_its_life_not_an_empty_hour(
    api: httpx.AsyncClient, node: Node
) -> None:
    await sign_in(api, READER)
    html = (await api.get("/ui/partials/overview")).text
    # the node's own agent started seconds ago: ten minutes shown, not sixty
    assert html.count('<rect class="ok"') == 10 and "last 10 minutes" in html


async def test_the_console_shows_dependencies_batches_and_retention(
    api: httpx.AsyncClient, node: Node, client: Client
) -> None:
    from pulling_agent.client import Job, aio

    work = client[node.agent.settings.mongodb_database]["work"]
    await work.create_index("failed_at", expireAfterSeconds=3 * 86_400, name="keep-3d")
    [a] = await aio.enqueue_many(work, [Job({"n": "a"}, delay=3_600)])
    [b] = await aio.enqueue_many(work, [Job({"n": "b"}, after=[a.id])])
    batch = await aio.enqueue_many(work, [Job({"n": 1}, delay=3_600)], then=Job({"r": 1}))
    await sign_in(api, READER)
    waiting = (await api.get("/ui/partials/document", params={"id": str(b.id)})).text
    assert cell(waiting, "doc-status") == "waiting"
    assert f"{a.id}" in cell(waiting, "doc-after") and "(waiting for 1)" in waiting
    member = (await api.get("/ui/partials/document", params={"id": str(batch[0].id)})).text
    assert cell(member, "doc-batch").startswith("0 processed, 0 failed, 0 cancelled of 1")
    overview = (await api.get("/ui/overview")).text
    assert cell(overview, "count-waiting") == "2"
    assert "failed 3d" in overview and "processed for ever" in overview


async def test_the_overview_shows_fleet_limits_and_a_document_what_it_waits_for(
    start_node: Any, client: Client, db_name: str
) -> None:
    """Slots held by live leases (another agent's documents): the type's running/limit and
    its waiting documents, the busiest key values (hostile ones as text), and a waiting
    document's reason in the document view."""
    api = await start_node(
        api_tokens=f"grafana:{READER}:read",
        api_host="127.0.0.1",
        type_fleet_concurrency="invoice=2",
        concurrency_key="tenant",
        key_concurrency=1,
    )
    work = client[db_name]["work"]
    lease = {
        "owner": "other-agent",
        "token": "t",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    held = {"status": "processing", "attempts": 1, "lease": lease}
    await work.insert_many(
        [
            {**held, "_id": "i0", "type": "invoice", "limit_slot": "t:invoice#0"},
            {**held, "_id": "i1", "type": "invoice", "limit_slot": "t:invoice#1"},
            {
                **held,
                "_id": "k0",
                "type": "mail",
                "tenant": HOSTILE,
                "key_slot": f"k:*={key_text(HOSTILE)}#0",
            },
            {**held, "_id": "k1", "type": "mail", "tenant": "acme", "key_slot": "k:*=s:acme#0"},
        ]
    )
    await work.insert_many(
        [{"_id": f"w{i}", "status": "pending", "attempts": 0, "type": "invoice"} for i in range(3)]
    )
    await sign_in(api, READER)
    page = (await api.get("/ui/partials/overview")).text
    types = re.search(r'id="type-limits">(.*?)</table>', page, re.S)
    assert types is not None
    assert "invoice 2 2 3 pending wait for a slot" in " ".join(
        re.sub(r"<[^>]+>", " ", types.group(1)).split()
    )
    assert cell(page, "key-values").startswith("2 key value(s) hold a slot now")
    keys = re.search(r'id="key-limits">(.*?)</table>', page, re.S)
    assert keys is not None and "acme" in keys.group(1)
    assert "<script>" not in page and "\x1b" not in page and "&lt;script&gt;" in keys.group(1)
    doc = (await api.get("/ui/partials/document", params={"id": "w0"})).text
    assert cell(doc, "doc-waiting-for") == "a slot of invoice (2/2 running)"
    running = (await api.get("/ui/partials/document", params={"id": "i0"})).text
    assert 'id="doc-waiting-for"' not in running
    assert 'id="limit-disagreements"' not in page
    # an agent claiming every type under no limit breaks the fleet's: the console says so
    rogue = {"_id": "rogue", "heartbeat_at": datetime.now(UTC), "state": "running"}
    await client[db_name]["agent_registry"].insert_one(rogue)
    page = (await api.get("/ui/partials/overview")).text
    found = re.search(r'id="limit-disagreements"><li>([^<]*)<', page)
    assert (
        found is not None and "invoice" in found.group(1) and "no limit on rogue" in found.group(1)
    )
