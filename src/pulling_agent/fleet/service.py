"""The control services behind the HTTP API, the console and ``pulling-agent ctl``.

Fleet-wide operations (:class:`ClusterService`) need only MongoDB (``ctl --mongodb-uri``
uses them with no agent running); per-agent operations (:class:`AgentService`) need the
agent this process runs. Scheduled jobs have their own: :mod:`pulling_agent.scheduler.service`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from pulling_agent.control.cluster import ClusterCommand, ControlState, reported_version
from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.control.requests import Source
from pulling_agent.encoding import as_dict, as_number, id_candidates, iso, to_json
from pulling_agent.fleet.registry import AgentRegistry, is_live
from pulling_agent.queue.database import Client
from pulling_agent.queue.model import WorkStore
from pulling_agent.runtime.agent import Agent
from pulling_agent.text import safe_text
from pulling_agent.timeouts import wait_event

ACK_POLL_SECONDS = 0.1


async def cancel_by_raw_ids(
    work: WorkStore, raw_ids: list[str], by: str, now: datetime
) -> dict[str, list[str]]:
    """Cancel documents named as typed (each reading of each id tried); the answer by the
    ids as given: ``cancelled`` (were pending), ``requested`` (processing), ``not_found``."""
    answer: dict[str, list[str]] = {"cancelled": [], "requested": [], "not_found": []}
    for raw in raw_ids:
        result = await work.cancel(id_candidates(raw), by, now)
        kind = "cancelled" if result.cancelled else "requested" if result.requested else "not_found"
        answer[kind].append(raw)
    return answer


def _acks(live: list[dict[str, Any]], version: int, expected: Collection[str]) -> dict[str, Any]:
    """Each live agent's answer to ``version``: applied it (or a later one), ignored it
    (with the agent's reason), or not yet; and the expected agents no longer live."""
    acked, pending, ignored = [], [], []
    for agent in live:
        name = str(agent["_id"])
        said = as_dict(agent.get("control_ignored"))
        if said.get("version") == version:
            ignored.append({"agent": name, "reason": safe_text(said.get("reason"), 500)})
        elif reported_version(agent.get("version_seen")) >= version:
            acked.append(name)
        else:
            pending.append(name)
    result: dict[str, Any] = {
        "version": version,
        "complete": not pending and not ignored,
        "acknowledged": sorted(acked),
        "ignored": sorted(ignored, key=lambda i: str(i["agent"])),
        "pending": sorted(pending),
        "stopped": sorted(set(expected) - {str(a["_id"]) for a in live}),
    }
    if pending:
        result["hint"] = (
            "agents that follow the control document by polling apply a command "
            "within their CONTROL_POLLING_INTERVAL (10 s by default): wait at "
            "least that long, or use change streams (a replica set)"
        )
    return result


class ClusterService:
    def __init__(
        self,
        control: ClusterControlStore,
        registry: AgentRegistry,
        work: WorkStore,
        clock: Callable[[], datetime],
    ) -> None:
        self.control = control
        self.registry = registry
        self.work = work
        self.clock = clock
        self.on_issued: Callable[[ControlState], None] | None = None

    async def command(
        self,
        command: ClusterCommand,
        reason: str,
        identity: str,
        note: str,
        wait: float | None,
        until: asyncio.Event | None = None,
    ) -> dict[str, Any]:
        """Issue a cluster command; with ``wait``, return once every live agent has applied
        its version (or the time is up, or ``until`` is set: the server answering is
        stopping), saying who applied it, who ignored it and why, who did not yet, and who
        left (an agent that stopped - as after a shutdown - removes itself from the
        registry). The version goes above every version an agent reports having applied,
        so no agent ignores it for being old."""
        entries = await self.registry.entries()
        floor = max((reported_version(a.get("version_seen")) for a in entries), default=0)
        now = self.clock()
        before = {
            str(a["_id"]) for a in entries if is_live(a, now, self.registry.heartbeat_interval)
        }
        state = await self.control.issue(command, reason, identity, note, now, floor)
        if self.on_issued is not None:
            self.on_issued(state)  # the agent that served the command applies it at once
        result: dict[str, Any] = {"control": state.as_dict()}
        if wait:
            result["acks"] = await self.wait_for_acks(state.version, wait, before, until)
        return result

    async def wait_for_acks(
        self,
        version: int,
        seconds: float,
        expected: Collection[str] = (),
        until: asyncio.Event | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            acks = _acks(await self.registry.live(self.clock()), version, expected)
            stop = until is not None and until.is_set()
            if not acks["pending"] or time.monotonic() >= deadline or stop:
                return acks
            if until is None:
                await asyncio.sleep(ACK_POLL_SECONDS)
            else:
                await wait_event(until, ACK_POLL_SECONDS)

    async def control_state(self) -> dict[str, Any]:
        state = await self.control.read()
        if state is None:
            return {
                "command": None,
                "version": 0,
                "timestamp": None,
                "reason": "",
                "updated_by": "",
                "note": "",
            }
        shown = state.as_dict()
        shown["timestamp"] = iso(shown["timestamp"])
        return shown

    async def history(self, limit: int) -> list[dict[str, Any]]:
        docs = await self.control.history(limit)
        return [to_json({k: v for k, v in d.items() if k != "kind"}) for d in docs]

    async def stats(self) -> dict[str, Any]:
        now = self.clock()
        agents = await self.registry.live(now)
        backlog = await self.work.counts()
        agents.sort(key=lambda a: str(a["_id"]))
        return {
            "now": iso(now),  # MongoDB's time as the answering process read it
            "agents": [to_json({"agent_id": a.pop("_id"), **a}) for a in agents],
            "live_agents": len(agents),
            "backlog": backlog,
            "fleet_throughput_per_min": round(
                sum(as_number(a.get("throughput_per_min")) for a in agents), 1
            ),
        }


class AgentService:
    """This process's agent, for the per-agent endpoints."""

    def __init__(
        self,
        agent: Agent,
        client: Client,
        snapshot: Callable[[], dict[str, Any]],
        redacted_uri: str,
    ) -> None:
        self.agent = agent
        self.client = client
        self.snapshot = snapshot
        self.redacted_uri = redacted_uri

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = to_json(self.snapshot())
        return state

    def pause(self, reason: str, identity: str) -> dict[str, Any]:
        self.agent.request_pause(Source.API, reason or "paused through the API", identity)
        return self.state()

    def resume(self) -> dict[str, Any]:
        self.agent.request_resume(Source.API)
        return self.state()

    async def mongo_status(self) -> dict[str, Any]:
        started = time.perf_counter()
        hello = await self.client.admin.command("hello")
        ping_ms = (time.perf_counter() - started) * 1000
        kind = (
            "mongos"
            if hello.get("msg") == "isdbgrid"
            else ("replica_set" if hello.get("setName") else "standalone")
        )
        settings = self.agent.settings
        return {
            "connected": True,
            "ping_ms": round(ping_ms, 2),
            "server": kind,
            "replica_set": hello.get("setName"),
            "writable_primary": bool(hello.get("isWritablePrimary")),
            "uri": self.redacted_uri,
            "database": settings.mongodb_database,
            "collection": settings.mongodb_collection,
            "watch_mode": self.snapshot().get("watch_mode"),
        }
