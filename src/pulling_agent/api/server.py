"""Serve the API from the agent's own event loop.

uvicorn's ``Server.serve`` captures SIGINT/SIGTERM (and re-raises them after it stops);
the agent owns the process's signals, so this server captures none and is stopped by the
agent's shutdown sequence instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

from pulling_agent.errors import PullingAgentError
from pulling_agent.logs import get_logger


class ApiStartError(PullingAgentError):
    """The API could not listen on its address."""


class _SignalFreeServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """A companion of the agent: starts before the first claim, stops at shutdown."""

    def __init__(self, app: Any, host: str, port: int, agent_id: str, tokens: bool) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
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
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
