"""Achieved rate under RATE_LIMIT and FLEET_RATE_LIMIT, one and four agents, wall clock.

Agents run in this process with a client each, against one nx-27017 server, on a backlog
larger than the run; the handler records when it starts. The achieved rate is
``(starts - 1) / (last start - first start)`` after the first second (the agents start one
after the other). Round trips per document count the queue's commands (claims, fleet
reservations, outcomes), not heartbeats or control polling. Prints tables; asserts nothing.

    python -m bench.rate_limit [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from rich.console import Console
from rich.table import Table

from bench.throughput import settings
from pulling_agent.dev.embedded import EmbeddedServer
from pulling_agent.logs import configure_logging
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.runtime.agent import Agent
from pulling_agent.runtime.rate_limit import FleetBucket

Client = AsyncMongoClient[dict[str, Any]]
WARM_UP = 1.0  # seconds of starts left out: the agents start one after the other


class QueueCommands(monitoring.CommandListener):
    """Commands on the work collection and fleet reservations (not heartbeats or control
    polling, which do not grow with the rate)."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get(event.command_name) == "work" or event.command_name == "findAndModify":
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


CASES = [  # (label, agents, RATE_LIMIT per agent, FLEET_RATE_LIMIT)
    ("RATE_LIMIT=50", 1, 50.0, None),
    ("RATE_LIMIT=50 on each", 4, 50.0, None),
    ("FLEET_RATE_LIMIT=50", 1, None, 50.0),
    ("FLEET_RATE_LIMIT=50", 4, None, 50.0),
    ("FLEET_RATE_LIMIT=200", 1, None, 200.0),
    ("FLEET_RATE_LIMIT=200", 4, None, 200.0),
    ("FLEET_RATE_LIMIT=5", 4, None, 5.0),
]


async def run_case(
    uri: str, workdir: Path, agents: int, rate: float | None, fleet: float | None, seconds: float
) -> tuple[float, float, float, float]:
    expected = (rate or 0) * agents or fleet or 1.0
    total = int(expected * (seconds + WARM_UP)) + 1
    setup: Client = AsyncMongoClient(uri)
    await setup.drop_database("bench")
    await setup.bench.work.insert_many(
        [{"status": "pending", "n": i} for i in range(total + 200 * agents)]
    )
    await setup.close()
    counter = QueueCommands()
    starts: list[float] = []

    async def handler(document: dict[str, Any]) -> None:
        starts.append(time.time())

    clients: list[Client] = [
        AsyncMongoClient(uri, event_listeners=[counter]) for _ in range(agents)
    ]
    fleet_agents = []
    for n, client in enumerate(clients):
        await client.admin.command("ping")
        config = settings(uri, f"rate-{n}", workdir, 100).model_copy(
            update={"rate_limit": rate, "fleet_rate_limit": fleet}
        )
        bucket = FleetBucket(client.bench.agent_control, "work", fleet) if fleet else None
        fleet_agents.append(Agent(config, MongoWorkStore(client.bench.work), handler, fleet=bucket))
    counter.count = 0
    tasks = [asyncio.create_task(a.run(install_signals=False)) for a in fleet_agents]
    while len(starts) < total:
        await asyncio.sleep(0.01)
    commands = counter.count
    for agent in fleet_agents:
        agent.request_shutdown("bench done")
    await asyncio.gather(*tasks)
    throttled = sum(sum(a.pipeline.rate_limit.throttled.seconds.values()) for a in fleet_agents)
    for client in clients:
        await client.close()
    ordered = sorted(starts)[:total]
    window = [t for t in ordered if t >= ordered[0] + WARM_UP]
    achieved = (len(window) - 1) / (window[-1] - window[0])
    return expected, achieved, commands / total, throttled


async def main(seconds: float) -> None:
    configure_logging("ERROR")
    table = Table(title=f"Achieved rate over {seconds:g} s of starts, no-op handler, nx-27017")
    for column in (
        "limit",
        "agents",
        "expected/s",
        "achieved/s",
        "error",
        "round trips/doc",
        "throttled s",
    ):
        table.add_column(column, justify="left" if column == "limit" else "right")
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        for label, agents, rate, fleet in CASES:
            expected, achieved, trips, throttled = await run_case(
                server.uri, Path(tmp), agents, rate, fleet, seconds
            )
            table.add_row(
                label,
                str(agents),
                f"{expected:g}",
                f"{achieved:.1f}",
                f"{(achieved - expected) / expected:+.1%}",
                f"{trips:.3f}",
                f"{throttled:.1f}",
            )
    Console(width=130).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args().seconds))
