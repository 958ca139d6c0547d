"""What dependencies and batches cost: round trips and commands per document, a chain of
dependents and a large batch against the same documents without a workflow.

One nx-27017 server, agents in process (PyMongo command monitoring counts every command
they and the producer send). Prints tables; asserts nothing.

    python -m bench.workflows [--chain 1000] [--members 100000] [--agents 1] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from rich.console import Console
from rich.table import Table

from bench.throughput import noop, run_until, settings
from pulling_agent.client import Job, aio
from pulling_agent.dev.embedded import EmbeddedServer
from pulling_agent.logs import configure_logging
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.runtime.agent import Agent

Client = AsyncMongoClient[dict[str, Any]]
INSERT_CHUNK = 10_000


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.seen[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> Counter[str]:
        taken, self.seen = self.seen, Counter()
        return taken


Row = tuple[str, int, float, float, float, Counter[str], float]


def fleet_of(
    uri: str, count: int, workdir: Path, listener: Commands
) -> tuple[list[Client], list[Agent]]:
    """``count`` agents, each with its own client (commands counted by ``listener``)."""
    clients: list[Client] = [
        AsyncMongoClient(uri, event_listeners=[listener]) for _ in range(count)
    ]
    quick = {"poll_interval": 0.05, "store_outage_seconds": 600}  # nx slows at 100k documents
    agents = [
        Agent(
            settings(uri, f"bench-{i}", workdir, 100).model_copy(update=quick),
            MongoWorkStore(c.bench.work),
            noop,
        )
        for i, c in enumerate(clients)
    ]
    return clients, agents


async def run_agents(
    uri: str,
    count: int,
    done: Callable[[list[Agent]], Awaitable[bool]],
    workdir: Path,
    listener: Commands,
) -> float:
    """Run ``count`` agents until ``done``; seconds taken."""
    clients, fleet = fleet_of(uri, count, workdir, listener)
    elapsed = await run_until(fleet, lambda: done(fleet), 0.05)
    for c in clients:
        await c.close()
    return elapsed


def processed(work: Any, query: dict[str, Any]) -> Callable[[list[Agent]], Awaitable[bool]]:
    async def check(fleet: list[Agent]) -> bool:
        return await work.find_one({**query, "status": "processed"}, {"_id": 1}) is not None

    return check


def counted(n: int) -> Callable[[list[Agent]], Awaitable[bool]]:
    async def check(fleet: list[Agent]) -> bool:
        return sum(a.pipeline.counters.processed for a in fleet) >= n

    return check


async def fresh(uri: str, listener: Commands) -> Any:
    client: Client = AsyncMongoClient(uri, event_listeners=[listener], tz_aware=True)
    await client.bench.work.drop()
    await MongoWorkStore(client.bench.work).ensure_indexes()
    return client


async def chain(uri: str, n: int, workdir: Path, listener: Commands) -> Row:
    client = await fresh(uri, listener)
    work = client.bench.work
    listener.take()
    started = time.perf_counter()
    last = await aio.enqueue(work, {"n": 0})
    for i in range(1, n):
        last = await aio.enqueue(work, {"n": i}, after=[last.id])
    enqueued = time.perf_counter() - started
    producer = sum(listener.take().values())
    watcher: Client = AsyncMongoClient(uri)
    done = processed(watcher.bench.work, {"_id": last.id})
    elapsed = await run_agents(uri, 1, done, workdir, listener)
    await watcher.close()
    agent = listener.take()
    await client.close()
    return (f"chain of {n:,}", n, enqueued, producer / n, elapsed, agent, sum(agent.values()) / n)


async def batch(
    uri: str, n: int, agents: int, workdir: Path, listener: Commands, then: bool
) -> Row:
    client = await fresh(uri, listener)
    work = client.bench.work
    listener.take()
    started = time.perf_counter()
    jobs = [Job({"n": i}) for i in range(n)]
    watcher: Client = AsyncMongoClient(uri)
    if then:  # done when the then job is
        result = await aio.enqueue_many(work, jobs, then=Job({"n": -1}))
        done = processed(watcher.bench.work, {"_id": result.then.id})
    else:  # the last one enqueued is not the last one processed: count them all
        for i in range(0, n, INSERT_CHUNK):
            await aio.enqueue_many(work, jobs[i : i + INSERT_CHUNK])
        done = counted(n)
    enqueued = time.perf_counter() - started
    producer = sum(listener.take().values())
    elapsed = await run_agents(uri, agents, done, workdir, listener)
    await watcher.close()
    agent = listener.take()
    await client.close()
    label = f"batch of {n:,} + then job" if then else f"{n:,} plain documents"
    return (
        f"{label}, {agents} agent{'s' if agents != 1 else ''}",
        n,
        enqueued,
        producer / n,
        elapsed,
        agent,
        sum(agent.values()) / n,
    )


async def main(chain_length: int, members: int, agents: int, rounds: int) -> None:
    configure_logging("ERROR")
    console = Console(width=150)
    listener = Commands()
    rows: list[Row] = []
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if chain_length:
            rows.append(await chain(server.uri, chain_length, workdir, listener))
        for n in range(rounds):  # alternated: batch first every other round
            for then in (False, True) if n % 2 == 0 else (True, False):
                rows.append(await batch(server.uri, members, agents, workdir, listener, then))
    table = Table(title="Workflows on nx-27017 (no-op handler, BATCH_SIZE=100)")
    for column in (
        "workload",
        "docs",
        "enqueue s",
        "producer trips/doc",
        "processing s",
        "agent trips/doc",
        "agent commands/doc by kind",
    ):
        table.add_column(
            column, justify="left" if column.startswith(("workload", "agent c")) else "right"
        )
    for label, n, enqueued, producer, elapsed, kinds, trips in rows:
        by_kind = ", ".join(f"{k} {v / n:.3f}" for k, v in kinds.most_common() if v / n >= 0.0005)
        table.add_row(
            label,
            f"{n:,}",
            f"{enqueued:.1f}",
            f"{producer:.2f}",
            f"{elapsed:.1f}",
            f"{trips:.3f}",
            by_kind,
        )
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", type=int, default=1_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=1, help="agents for the plain and batch rows")
    parser.add_argument("--rounds", type=int, default=1, help="plain and batch rows, alternated")
    args = parser.parse_args()
    asyncio.run(main(args.chain, args.members, args.agents, args.rounds))
