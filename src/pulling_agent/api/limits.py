"""How much a request may send: a body limit per route, checked before anything reads it.

A request whose ``Content-Length`` is over its route's limit is refused with 413 before a
byte of the body is read; a body sent without a length (chunked) is read only up to the
limit, then refused the same way. Routes read bodies only after checking who is asking
(the console's actions check the session first), so a caller who has not signed in can
make an agent hold at most one small body per request. Pure ASGI: no buffering beyond the
limit, nothing for requests without a body.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
SIGN_IN_LIMIT = 4 * KIB  # the sign-in form: a token and where to go next
REQUEUE_LIMIT = 256 * KIB  # up to 1,000 ids picked in the dead letter
DEFAULT_LIMIT = 16 * KIB  # everything else: the API takes its input in the query string


def body_limit(path: str) -> int:
    """The most bytes a request to ``path`` may carry in its body."""
    if path == "/ui/login":
        return SIGN_IN_LIMIT
    if path == "/ui/actions/requeue":
        return REQUEUE_LIMIT
    return DEFAULT_LIMIT


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: Callable[[str], int] = body_limit) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or len(declared) > 18:
                await _refuse(send, 400, "Content-Length must be a number of bytes")
            elif int(declared) > limit:
                await _refuse(send, 413, f"request body too large: at most {limit} bytes here")
            else:  # the server delivers exactly that many bytes
                await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        body, complete = await _read_up_to(receive, limit)
        if not complete:
            await _refuse(send, 413, f"request body too large: at most {limit} bytes here")
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_up_to(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body, if it ends within ``limit`` bytes (else what was read, and False)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True  # disconnected: the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # the app waits for a disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
