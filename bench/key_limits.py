"""The cost of fleet-wide limits and fair claiming at scale of keys (issue 25).

``--docs`` documents (100,000), each with its own ``tenant`` value, drained by ``--agents``
agent processes (default settings, a no-op handler) through a proxy that counts the
commands on the work collection (bench.fleet_scale's WireCounter), once per configuration:

* no key settings (as before issue 25);
* ``CONCURRENCY_KEY=tenant`` (fair claiming only);
* ``CONCURRENCY_KEY=tenant KEY_CONCURRENCY=1`` (a limit per tenant, fair claiming);
* the same with ``FAIR_CLAIMING=false`` (the limit alone);
* ``TYPE_FLEET_CONCURRENCY=job=8`` (one type's fleet-wide limit of 8 slots).

Reported per document: round trips to the work collection, the server's CPU time
(nx-27017's process, from /proc), and docs/s. Prints a table; asserts nothing.

    python -m bench.key_limits [--docs 100000] [--agents 2] [--only TYPE_FLEET]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from rich.console import Console
from rich.table import Table

from bench.fleet_scale import COLLECTION, WireCounter, _wait_registered, fleet, with_ratios
from pulling_agent.dev.embedded import EmbeddedServer

CONFIGS: list[tuple[str, dict[str, str]]] = [
    ("no key settings", {}),
    ("CONCURRENCY_KEY (fair claiming)", {"CONCURRENCY_KEY": "tenant"}),
    ("+ KEY_CONCURRENCY=1", {"CONCURRENCY_KEY": "tenant", "KEY_CONCURRENCY": "1"}),
    (
        "KEY_CONCURRENCY=1, FAIR_CLAIMING=false",
        {"CONCURRENCY_KEY": "tenant", "KEY_CONCURRENCY": "1", "FAIR_CLAIMING": "false"},
    ),
    ("TYPE_FLEET_CONCURRENCY=job=8", {"TYPE_FLEET_CONCURRENCY": "job=8"}),
]


def server_cpu(server: EmbeddedServer) -> float:
    """CPU seconds (user + system) the server process has used."""
    pid = int(server.pid_file.read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    extra: dict[str, str], docs: int, agents: int, tmp: Path
) -> tuple[float, float, float]:
    with EmbeddedServer(tmp / "nx") as server:
        counter = WireCounter(server.port)
        stop = asyncio.Event()
        proxy = asyncio.create_task(counter.run(stop))
        await asyncio.sleep(0.2)
        direct: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        work = direct["bench"][COLLECTION]
        try:
            uri = f"mongodb://127.0.0.1:{counter.port}/"
            with fleet(agents, uri, tmp, {**extra, "POLL_INTERVAL": "0.5"}):
                await asyncio.to_thread(_wait_registered, direct, agents)
                for start in range(0, docs, 10_000):
                    work.insert_many(
                        [
                            {"status": "pending", "n": n, "tenant": f"t{n:07d}", "type": "job"}
                            for n in range(start, min(docs, start + 10_000))
                        ]
                    )
                trips, cpu, started = (
                    counter.counts[COLLECTION],
                    server_cpu(server),
                    time.monotonic(),
                )
                while await asyncio.to_thread(work.count_documents, {"status": "pending"}):
                    await asyncio.sleep(1.0)
                while await asyncio.to_thread(
                    work.count_documents, {"status": {"$ne": "processed"}}
                ):
                    await asyncio.sleep(0.2)
                elapsed = time.monotonic() - started
                trips = counter.counts[COLLECTION] - trips
                cpu = server_cpu(server) - cpu
        finally:
            direct.close()
            stop.set()
            await proxy
    return trips / docs, cpu / docs * 1e6, docs / elapsed


async def main(docs: int, agents: int, only: str = "") -> None:
    table = Table(
        title=f"{docs:,} documents, one tenant each, {agents} agents (processes), no-op handler, "
        "nx-27017, 2 cores"
    )
    for column in (
        "settings",
        "round trips/doc",
        "vs none",
        "server CPU µs/doc",
        "vs none",
        "docs/s",
        "vs none",
    ):
        table.add_column(column, justify="left" if column == "settings" else "right")
    base: tuple[float, float, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for n, (label, extra) in enumerate(CONFIGS):
            if only and n and only not in label:  # the first row is the baseline: always
                continue
            where = Path(tmp) / f"c{n}"
            where.mkdir()
            trips, cpu, rate = await measure(extra, docs, agents, where)
            base = base or (trips, cpu, rate)
            table.add_row(label, *with_ratios((trips, cpu, rate), base, (".4f", ",.0f", ",.0f")))
            Console().print(
                f"{label}: {trips:.4f} rt/doc, {cpu:,.0f} µs server CPU/doc, {rate:,.0f}/s"
            )
    Console(width=140).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--only", default="", help="rows whose settings contain this")
    options = parser.parse_args()
    asyncio.run(main(options.docs, options.agents, options.only))
