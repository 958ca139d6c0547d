"""Serve the API from the agent's own event loop.

uvicorn's ``Server.serve`` captures SIGINT/SIGTERM (and re-raises them after it stops);
the agent owns the process's signals, so this server captures none and is stopped by the
agent's shutdown sequence instead, last of its companions (so that a request waiting for
acknowledgements sees this agent leave the registry and answers before the server stops).

What a client may hold: the request body is limited per route (:mod:`.limits`), a
connection must send its request's headers within ``HEADER_SECONDS`` (uvicorn's own
timeout only starts after a first response), an idle connection is closed after
``KEEP_ALIVE_SECONDS``, and at most ``MAX_CONCURRENCY`` connections and requests are
served at once (503 beyond). Every response carries the security headers (:mod:`.headers`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pulling_agent.api.headers import SecurityHeaders
from pulling_agent.api.limits import BodyLimit
from pulling_agent.errors import PullingAgentError
from pulling_agent.logs import get_logger

HEADER_SECONDS = 10.0  # from connecting to the end of the request's headers
KEEP_ALIVE_SECONDS = 5  # an idle connection between requests
MAX_CONCURRENCY = 100  # connections and requests at once; more are answered 503
GRACE_SECONDS = 1  # in-flight requests finish within this at shutdown


class ApiStartError(PullingAgentError):
    """The API could not listen on its address."""


class _HeaderTimeout(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for the first request's headers: a
    client that connects and sends nothing, or sends its headers a byte at a time, is
    disconnected instead of holding the connection for ever."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            HEADER_SECONDS, self._headers_late
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is None:
            self.transport.close()


class _SignalFreeServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """A companion of the agent: starts before the first claim, stops at shutdown after
    every other companion (``stops_last``)."""

    stops_last = True

    def __init__(self, app: Any, host: str, port: int, agent_id: str, tokens: bool) -> None:
        self.stopping = asyncio.Event()  # set first at shutdown: waiting requests answer now
        if hasattr(app, "state"):
            app.state.stopping = self.stopping
        config = uvicorn.Config(
            SecurityHeaders(BodyLimit(app)),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=_HeaderTimeout,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            limit_concurrency=MAX_CONCURRENCY,
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
        self._server = _SignalFreeServer(config)
        self._task: asyncio.Task[None] | None = None
        self._host = host
        self._tokens = tokens
        self._log = get_logger(agent_id=agent_id, component="api")
        self.port = port

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise ApiStartError(f"the API could not listen on {self._host}:{self.port}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self._log.info("API listening", action="api.listen", host=self._host, port=self.port)
        if not self._tokens:
            self._log.warning(
                "API listening on loopback only: no API_TOKENS configured. Set "
                "API_TOKENS=name:token (16+ characters) to expose it with authentication.",
                action="api.no_auth",
                host=self._host,
                port=self.port,
            )

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as exc:  # uvicorn exits the process when it cannot bind
            raise ApiStartError(
                f"the API could not listen on {self._host}:{self.port} (is the port in use? "
                "set API_PORT)"
            ) from exc

    async def run(self) -> None:
        assert self._task is not None
        await asyncio.shield(self._task)
        if not self._server.should_exit:
            raise ApiStartError("the API server stopped unexpectedly")

    async def stop(self) -> None:
        self.stopping.set()
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
