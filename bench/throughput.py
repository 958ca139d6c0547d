"""Throughput and round trips per document: the seed's loop against the lease-based agent.

One run, one nx-27017 server. Every throughput row runs twice: straight to the loopback
server, and through a delay proxy (``--delay`` seconds per direction, ping printed). Agent
CPU per document is measured over the in-memory store. Prints tables; asserts nothing.

    python -m bench.throughput [--docs 2000] [--delay 0.0015] [--priorities] [--local-clock]

The agents run on MongoDB's clock as in production (a ServerClock measured by hello before
the first claim and on every heartbeat); ``--local-clock`` runs them on their own wall clock,
as before issue 24, for a back-to-back comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from rich.console import Console
from rich.table import Table

from bench.delay_proxy import ProxyProcess
from pulling_agent.bootstrap import watch_clock
from pulling_agent.config import Settings, load_settings
from pulling_agent.dev.embedded import EmbeddedServer
from pulling_agent.logs import configure_logging
from pulling_agent.queue.clock import Sample, ServerClock
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.queue.model import WorkStore
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.runtime.agent import Agent

Client = AsyncMongoClient[dict[str, Any]]


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def noop(document: dict[str, Any]) -> None:
    return None


def settings(uri: str, agent_id: str, workdir: Path, batch_size: int) -> Settings:
    return load_settings(
        mongodb_uri=uri,
        mongodb_database="bench",
        mongodb_collection="work",
        agent_id=agent_id,
        batch_size=batch_size,
        concurrency=8,
        heartbeat_interval=1,
        lease_seconds=60,
        health_dir=workdir / agent_id,
        control_file=workdir / "no-control",
        enable_change_streams="false",
        log_level="ERROR",
    )


LOCAL_CLOCK = False  # --local-clock: agents on their own wall clock (before issue 24)
PRIORITIES = False  # --priorities: every document gets a priority 0-9 (claims sort on it)


def documents(n: int) -> list[dict[str, Any]]:
    if PRIORITIES:
        return [{"status": "pending", "n": i, "priority": i * 7 % 10} for i in range(n)]
    return [{"status": "pending", "n": i} for i in range(n)]


async def fill(uri: str, n: int) -> None:
    client: Client = AsyncMongoClient(uri)
    collection = client.bench.work
    await collection.drop()
    await collection.insert_many(documents(n))
    await client.close()


async def seed_loop(uri: str, n: int, batch_size: int, counter: CommandCounter) -> float:
    """Seed 001's ``_process_batch``: find pending, then update each document by itself."""
    client: Client = AsyncMongoClient(uri, event_listeners=[counter])
    collection = client.bench.work
    await collection.find_one()
    counter.count = 0
    started = time.perf_counter()
    while docs := await collection.find({"status": "pending"}, limit=batch_size).to_list():
        for doc in docs:
            await noop(doc)
            await collection.update_one(
                {"_id": doc["_id"]},
                {"$set": {"status": "processed", "processed_at": datetime.now(UTC)}},
            )
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def agents(
    uri: str, n: int, count: int, batch_size: int, counter: CommandCounter, workdir: Path
) -> float:
    clients: list[Client] = [AsyncMongoClient(uri, event_listeners=[counter]) for _ in range(count)]
    for client in clients:
        await client.admin.command("ping")
    fleet = [
        on_clock(
            settings(uri, f"bench-{i}", workdir, batch_size),
            MongoWorkStore(client.bench.work),
            None if LOCAL_CLOCK else ServerClock.of(client),
        )
        for i, client in enumerate(clients)
    ]
    counter.count = 0

    async def done() -> bool:
        return sum(a.pipeline.counters.processed for a in fleet) >= n

    elapsed = await run_until(fleet, done, 0.002)
    for client in clients:
        await client.close()
    return elapsed


def on_clock(config: Settings, store: WorkStore, clock: ServerClock | None) -> Agent:
    """An agent on ``clock`` (MongoDB's, watched as in production), or on its wall clock."""
    if clock is None:
        return Agent(config, store, noop)
    agent = Agent(config, store, noop, clock=clock.now)
    if isinstance(store, MongoWorkStore):
        store.clock = clock.now
        watch_clock(agent, clock, config)
    return agent


async def run_until(fleet: list[Agent], done: Callable[[], Awaitable[bool]], poll: float) -> float:
    """Run ``fleet`` until ``done()`` (asked every ``poll`` seconds), then shut it down;
    the seconds until done."""
    started = time.perf_counter()
    tasks = [asyncio.create_task(a.run(install_signals=False)) for a in fleet]
    while not await done():
        await asyncio.sleep(poll)
    elapsed = time.perf_counter() - started
    for agent in fleet:
        agent.request_shutdown("bench done")
    await asyncio.gather(*tasks)
    return elapsed


async def ping_ms(uri: str) -> float:
    client: Client = AsyncMongoClient(uri)
    await client.admin.command("ping")
    samples = []
    for _ in range(20):
        t = time.perf_counter()
        await client.admin.command("ping")
        samples.append((time.perf_counter() - t) * 1000)
    await client.close()
    return statistics.median(samples)


async def cpu_per_document(
    n: int, batch_size: int, workdir: Path, docs: list[dict[str, Any]] | None = None
) -> float:
    """Agent CPU µs per document over the in-memory store (``docs``, or ``n`` plain ones)."""
    store: WorkStore = MemoryWorkStore(documents(n) if docs is None else docs)
    clock = None
    if not LOCAL_CLOCK:  # the estimate's arithmetic on every reading, from a made-up sample
        clock = ServerClock()
        clock.record(Sample(datetime.now(UTC), time.monotonic(), 0.001, time.time()))
    agent = on_clock(settings("mongodb://unused/", "cpu", workdir, batch_size), store, clock)
    started = time.process_time()
    task = asyncio.create_task(agent.run(install_signals=False))
    while agent.pipeline.counters.processed < n:
        await asyncio.sleep(0)
    used = time.process_time() - started
    agent.request_shutdown("bench done")
    await task
    return used / n * 1e6


Row = tuple[str, str, int, float, float]


async def measure(
    label: str, path: str, uri: str, n: int, run: Callable[[CommandCounter], Awaitable[float]]
) -> Row:
    await fill(uri, n)
    counter = CommandCounter()
    elapsed = await run(counter)
    return (label, path, n, n / elapsed, counter.count / n)


async def main(n: int, delay: float, batch_size: int) -> None:
    configure_logging("ERROR")
    console = Console(width=130)
    rows: list[Row] = []
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with ProxyProcess(server.port, delay) as proxy:
            paths = {
                "loopback": server.uri,
                f"proxy +{delay * 1000:.1f} ms each way": f"mongodb://127.0.0.1:{proxy.port}/",
            }
            pings = {name: await ping_ms(uri) for name, uri in paths.items()}
            for path, uri in paths.items():
                rows.append(
                    await measure(
                        "seed loop (find, then update_one each)",
                        path,
                        uri,
                        n,
                        lambda c, uri=uri: seed_loop(uri, n, batch_size, c),  # type: ignore[misc]
                    )
                )
                for count in (1, 4):
                    rows.append(
                        await measure(
                            f"pulling-agent x{count}",
                            path,
                            uri,
                            n,
                            lambda c, uri=uri, count=count: agents(  # type: ignore[misc]
                                uri, n, count, batch_size, c, workdir
                            ),
                        )
                    )
        cpu = await cpu_per_document(max(n, 20_000), batch_size, workdir)

    shape = "priorities 0-9" if PRIORITIES else "no priority field"
    clock = "agents on their wall clock" if LOCAL_CLOCK else "agents on MongoDB's clock"
    table = Table(
        title=f"Throughput, no-op handler, BATCH_SIZE={batch_size}, {shape}, {clock}, nx-27017"
    )
    for column in ("loop", "path", "docs", "docs/s", "round trips/doc", "vs seed"):
        table.add_column(column, justify="left" if column in ("loop", "path") else "right")
    seed_rate = {path: rate for label, path, _, rate, _ in rows if label.startswith("seed")}
    for label, path, docs, rate, trips in rows:
        table.add_row(
            label, path, str(docs), f"{rate:,.0f}", f"{trips:.3f}", f"{rate / seed_rate[path]:.1f}x"
        )
    console.print(table)
    pings_table = Table(title="Ping (median of 20)")
    pings_table.add_column("path")
    pings_table.add_column("ms", justify="right")
    for name, ms in pings.items():
        pings_table.add_row(name, f"{ms:.2f}")
    console.print(pings_table)
    console.print(f"Agent CPU per document over the in-memory store: {cpu:.1f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.0005, help="seconds per direction")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--priorities", action="store_true", help="documents with priorities")
    parser.add_argument("--local-clock", action="store_true", help="agents on their wall clock")
    args = parser.parse_args()
    PRIORITIES = args.priorities
    LOCAL_CLOCK = args.local_clock
    asyncio.run(main(args.docs, args.delay, args.batch_size))
