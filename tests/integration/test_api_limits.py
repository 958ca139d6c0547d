"""What a client may make an agent hold or run, over a real socket to the agent's server
(uvicorn, in process): bodies refused before they are read, sessions checked before a body
is, connections that never finish their headers closed, security headers on every
response, no third-party pages, no redirects built from the Host header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from pulling_agent.api import server
from pulling_agent.bootstrap import Node
from tests.integration.conftest import TOKEN

MIB = 1024 * 1024


async def exchange(port: int, head: str, body: bytes = b"", seconds: float = 10.0) -> bytes:
    """Send a raw request (``head`` without its blank line) and read what comes back until
    the server closes or ``seconds`` pass; b"" if it answered nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65_536):
                received += chunk
                if b"\r\n\r\n" in received and received.count(b"}") >= 1:
                    break
    except TimeoutError:
        pass
    writer.close()
    return received


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


@pytest.fixture
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    assert node.api is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.api.port}") as client:
        yield client


@pytest.mark.parametrize(
    "path",
    ["/ui/login", "/ui/actions/requeue", "/ui/actions/cluster/pause", "/api/cluster/pause"],
)
async def test_a_huge_declared_body_is_refused_before_it_is_read(node: Node, path: str) -> None:
    assert node.api is not None
    head = (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Length: {150 * MIB}\n"
        "Content-Type: application/json"
    )
    answer = await exchange(node.api.port, head)  # the body is never sent
    assert status(answer) == 413, answer[:300]
    assert b"too large" in answer


async def test_a_streamed_body_without_a_length_is_cut_at_the_limit(node: Node) -> None:
    assert node.api is not None
    head = "POST /ui/login HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked"
    chunk = b"a" * 4_096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    assert status(await exchange(node.api.port, head, body)) == 413


async def test_an_action_checks_the_session_before_reading_its_body(node: Node) -> None:
    assert node.api is not None
    head = (
        "POST /ui/actions/requeue HTTP/1.1\nHost: 127.0.0.1\n"
        f"Content-Length: {200 * 1024}\nContent-Type: application/json"
    )  # under the route's limit: only the missing session can answer before the body
    answer = await exchange(node.api.port, head)
    assert status(answer) == 401, answer[:300]


async def test_a_connection_that_never_finishes_its_headers_is_closed(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert node.api is not None
    monkeypatch.setattr(server, "HEADER_SECONDS", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.api.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
    await writer.drain()
    async with asyncio.timeout(10):  # today: open for ever
        assert await reader.read(1024) == b"", "closed by the server, nothing answered"
    writer.close()


async def test_every_response_carries_the_security_headers(http: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/api/agent/state", "/openapi.json", "/nowhere", "/ui/login"):
        response = await http.get(path)
        headers = response.headers
        assert "default-src" in headers.get("content-security-policy", ""), path
        assert headers.get("x-content-type-options") == "nosniff", path
        assert headers.get("x-frame-options") == "DENY", path
    assert "script-src 'self'" in (await http.get("/ui/login")).headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_no_page_loads_third_party_scripts(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 404
    assert b"cdn" not in response.content.lower()


async def test_no_redirect_is_built_from_the_host_header(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/api/agent/state/",
        headers={"Host": "evil.example", "Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 404 and "location" not in response.headers


async def test_a_sign_in_with_too_many_fields_is_a_400(http: httpx.AsyncClient) -> None:
    form = "&".join(f"f{i}=x" for i in range(11))
    response = await http.post(
        "/ui/login",
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400 and "at most 10 fields" in response.json()["detail"]
