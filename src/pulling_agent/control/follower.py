"""Follow the cluster control document and apply each new version once.

By change stream when the server is a replica set or mongos (or ``ENABLE_CHANGE_STREAMS``
is ``always``), else by polling every ``CONTROL_POLLING_INTERVAL``. A lost stream never
leaves the agent deaf: it polls while the stream is down and reopens it after a back-off.
The standing document is read before the agent's first claim, so an agent that starts
while the cluster is paused starts paused.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from pymongo.errors import PyMongoError

from pulling_agent.config import ChangeStreams
from pulling_agent.control.cluster import CONTROL_ID, Action, ControlState, decide
from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.control.requests import Source
from pulling_agent.logs import get_logger
from pulling_agent.queue.database import Client, use_change_streams

STREAM_RETRY_SECONDS = 2.0
PIPELINE = [{"$match": {"documentKey._id": CONTROL_ID}}]


class Controllable(Protocol):
    """What the follower needs of an agent."""

    def request_pause(self, source: Source, reason: str, by: str) -> None: ...
    def request_resume(self, source: Source) -> None: ...
    def request_shutdown(self, reason: str) -> None: ...
    def notify_changed(self) -> None: ...


class WatchMode:
    CHANGE_STREAMS = "change_streams"
    POLLING = "polling"


class ClusterFollower:
    def __init__(
        self,
        store: ClusterControlStore,
        client: Client,
        mode: ChangeStreams,
        polling_interval: float,
        agent: Controllable,
        agent_id: str,
    ) -> None:
        self._store = store
        self._client = client
        self._mode = mode
        self._interval = polling_interval
        self._agent = agent
        self._log = get_logger(agent_id=agent_id, component="cluster")
        self.watch_mode = WatchMode.POLLING
        self.stream_healthy = False
        self.version_seen = 0  # the highest version applied (never one that was ignored)
        self.state: ControlState | None = None
        self.ignored: dict[str, Any] | None = None  # the last document ignored, and why

    async def start(self) -> None:
        """Choose the watch mode and apply the standing command (retrying until read)."""
        self._log.info(
            "[Distributed Control] Initializing cluster coordination", action="cluster.init"
        )
        streams = await self._retry(lambda: use_change_streams(self._client, self._mode))
        if streams:
            self.watch_mode = WatchMode.CHANGE_STREAMS
            self._log.info(
                "Using MongoDB Change Streams for real-time control",
                action="cluster.watch_mode",
                watch_mode=self.watch_mode,
            )
        else:
            if self._mode is ChangeStreams.AUTO:  # asked for, not available: say so (seed 004)
                self._log.warning(
                    "MongoDB Change Streams not available: Replica set required. "
                    "Using polling fallback.",
                    action="cluster.change_streams_unavailable",
                    polling_interval=self._interval,
                )
            self._log.info(
                f"Using polling fallback (interval: {self._interval:g}s)",
                action="cluster.watch_mode",
                watch_mode=self.watch_mode,
            )
        self.apply(await self._retry(self._store.read), at_startup=True)

    async def run(self) -> None:
        if self.watch_mode == WatchMode.POLLING:
            while True:
                await asyncio.sleep(self._interval)
                await self._poll()
        while True:
            try:
                async with await self._store.collection.watch(
                    PIPELINE, full_document="updateLookup"
                ) as stream:
                    self.stream_healthy = True
                    await self._poll()  # anything issued between the last read and now
                    async for change in stream:
                        doc = change.get("fullDocument")
                        self.apply(ControlState.from_document(doc) if doc else await self._read())
            except PyMongoError as exc:
                self.stream_healthy = False
                self._log.warning(
                    "control change stream lost; polling until it reopens",
                    action="cluster.stream_lost",
                    error=str(exc)[:300],
                )
            await self._poll_for(STREAM_RETRY_SECONDS)

    async def _poll_for(self, seconds: float) -> None:
        """Poll (at the polling interval, at least once) for ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            await self._poll()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(self._interval, remaining))

    async def _poll(self) -> None:
        with contextlib.suppress(PyMongoError):
            self.apply(await self._read())

    async def _read(self) -> ControlState | None:
        try:
            return await self._store.read()
        except PyMongoError as exc:
            self._log.warning(
                "cannot read the control document",
                action="cluster.read_error",
                error=str(exc)[:300],
            )
            raise

    async def _retry(self, call: Any) -> Any:
        while True:
            try:
                return await call()
            except PyMongoError as exc:
                self._log.warning(
                    "control document unreachable, retrying",
                    action="cluster.start_error",
                    error=str(exc)[:300],
                )
                await asyncio.sleep(STREAM_RETRY_SECONDS)

    def apply(self, state: ControlState | None, at_startup: bool = False) -> None:
        """Act on ``state`` if its version is usable and new to this agent. A document that
        is not (no usable version, or one that does not go above the version applied) is
        logged once and recorded in :attr:`ignored`, which the registry publishes: a
        writer waiting for acknowledgements reports it as ignored, never as applied."""
        if state is None:
            return
        if self.state is not None and state.identity() == self.state.identity():
            return  # the command applied, read again
        if state.problem:
            self._ignore(state, f"malformed control document: {state.problem}")
            return
        if state.version <= self.version_seen:
            self._ignore(
                state,
                f"its version {state.version} does not go above {self.version_seen}, the one "
                "applied (edited or recreated by hand? issue commands with pulling-agent ctl "
                "or the API)",
            )
            return
        self.version_seen = state.version
        self.state = state
        decision = decide(state, at_startup)
        self._log.info(
            "cluster command",
            action="cluster.command",
            command=state.command[:40],
            version=state.version,
            decision=decision.action.value,
            reason=decision.reason,
            updated_by=state.updated_by,
        )
        if decision.action is Action.HOLD_PAUSE:
            self._agent.request_pause(Source.CLUSTER, decision.reason, state.updated_by)
        elif decision.action is Action.RELEASE:
            self._agent.request_resume(Source.CLUSTER)
        elif decision.action is Action.SHUTDOWN:
            self._agent.request_shutdown(f"cluster shutdown v{state.version}: {decision.reason}")
        else:
            self._ignore(state, decision.reason)
        self._agent.notify_changed()

    def _ignore(self, state: ControlState, reason: str) -> None:
        ignored = {
            "version": state.version or None,
            "command": state.command[:40],
            "reason": reason,
        }
        if ignored == self.ignored:
            return
        self.ignored = ignored
        self._log.warning(
            "Ignoring cluster control document",
            action="cluster.ignored",
            command=state.command[:40],
            version=state.version or None,
            version_applied=self.version_seen,
            reason=reason,
        )
        self._agent.notify_changed()  # the registry says so at once

    async def stop(self) -> None:
        return None
