"""Fleet pause propagation: from issuing a cluster pause to every agent having stopped
claiming, for four agents following the control document by change stream and by polling.

One nx-27017 server; the agents run in this process, each with its own client and an
in-memory work queue (the measurement is about control, not work). Prints p50/p99 over
repeated runs; asserts nothing.

    python -m bench.pause_propagation [--agents 4] [--runs 30] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

from pulling_agent.config import ChangeStreams, load_settings
from pulling_agent.control.cluster import ClusterCommand
from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.control.follower import ClusterFollower
from pulling_agent.dev.embedded import EmbeddedServer
from pulling_agent.logs import configure_logging
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.runtime.agent import Agent
from pulling_agent.runtime.state import AgentState

Client = AsyncMongoClient[dict[str, Any]]


async def noop(document: dict[str, Any]) -> None:
    return None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    uri: str, mode: ChangeStreams, agents: int, runs: int, interval: float, workdir: Path
) -> list[float]:
    clients: list[Client] = [AsyncMongoClient(uri) for _ in range(agents + 1)]
    control = ClusterControlStore(clients[0].bench_control.agent_control)
    await control.collection.drop()
    fleet: list[Agent] = []
    for i in range(agents):
        settings = load_settings(
            mongodb_uri=uri,
            mongodb_database="bench_control",
            mongodb_collection="work",
            agent_id=f"agent-{i}",
            health_dir=workdir / f"{mode}-{i}",
            control_file=workdir / "none",
            heartbeat_interval=5,
            log_level="ERROR",
        )
        agent = Agent(settings, MemoryWorkStore(), noop)
        agent.companions["cluster"] = ClusterFollower(
            ClusterControlStore(clients[i + 1].bench_control.agent_control),
            clients[i + 1],
            mode,
            interval,
            agent,
            settings.agent_id,
        )
        fleet.append(agent)
    tasks = [asyncio.create_task(a.run(install_signals=False)) for a in fleet]

    async def all_in(state: AgentState) -> None:
        while not all(a.state is state for a in fleet):
            await asyncio.sleep(0.001)

    await all_in(AgentState.RUNNING)
    latencies = []
    for _ in range(runs):
        # issue at a random phase of the agents' polling, as an operator would
        await asyncio.sleep(random.uniform(0, interval))
        started = time.perf_counter()
        await control.issue(ClusterCommand.PAUSE, "bench", "bench", "", datetime.now(UTC))
        await all_in(AgentState.PAUSED)
        latencies.append((time.perf_counter() - started) * 1000)
        await control.issue(ClusterCommand.RESUME, "bench", "bench", "", datetime.now(UTC))
        await all_in(AgentState.RUNNING)
    for agent in fleet:
        agent.request_shutdown("bench done")
    await asyncio.gather(*tasks)
    for client in clients:
        await client.close()
    return latencies


async def main(agents: int, runs: int, interval: float) -> None:
    configure_logging("ERROR")
    table = Table(title=f"Fleet pause propagation, {agents} agents, {runs} runs, nx-27017")
    for column in ("watch mode", "p50 ms", "p99 ms", "max ms", "target"):
        table.add_column(column, justify="left" if column in ("watch mode", "target") else "right")
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        for mode, label, target in (
            (ChangeStreams.ALWAYS, "change_streams", "p99 <= 300 ms"),
            (
                ChangeStreams.OFF,
                f"polling (interval {interval:g} s)",
                f"p99 <= {interval * 1000 + 200:.0f} ms",
            ),
        ):
            samples = await measure(server.uri, mode, agents, runs, interval, Path(tmp))
            table.add_row(
                label,
                f"{statistics.median(samples):.0f}",
                f"{percentile(samples, 0.99):.0f}",
                f"{max(samples):.0f}",
                target,
            )
    Console(width=120).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0, help="CONTROL_POLLING_INTERVAL")
    args = parser.parse_args()
    asyncio.run(main(args.agents, args.runs, args.interval))
