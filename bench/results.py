"""Results and waiting for them (issue 26), with the agent as a separate process.

1. Producer-to-result latency: ``--calls`` (1,000) enqueue-then-wait calls, one after the
   other, against one agent process (``ENABLE_CHANGE_STREAMS=always`` so an idle agent is
   woken by the insert, not by ``POLL_INTERVAL``), once waiting by polling and once by
   change stream (string ``_id``s there: nx-27017's streams miss ObjectIds,
   tests/deviations.py). p50/p99/max of the whole call, and the finds each wait sent.
2. The cost of storing results: ``--docs`` (2,000) documents drained by the agent whose
   handler returns a small dict, against one returning nothing: round trips to the work
   collection per document (at the wire, bench.fleet_scale's counter), bytes stored per
   document, docs/s.

Prints tables; asserts nothing.

    python -m bench.results [--calls 1000] [--docs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import bson
from pymongo import MongoClient, monitoring
from rich.console import Console
from rich.table import Table

from bench.fleet_scale import COLLECTION, _wait_registered, counted_server, drain, fleet
from pulling_agent.client import enqueue, wait
from pulling_agent.dev.embedded import EmbeddedServer

ANSWER = {"file": "exports/2026-12/report-000042.csv", "rows": 1234, "ok": True}


async def answer(document: dict[str, Any]) -> dict[str, Any]:
    return ANSWER


async def nothing(document: dict[str, Any]) -> None:
    return None


class Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += event.command_name == "find"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


def latency(calls: int, stream: bool, tmp: Path) -> tuple[list[float], float]:
    """Seconds per enqueue-and-wait call, and the finds per wait."""
    with EmbeddedServer(tmp / "nx") as server:
        finds = Finds()
        direct: MongoClient[dict[str, Any]] = MongoClient(
            server.uri, tz_aware=True, event_listeners=[finds]
        )
        work = direct["bench"][COLLECTION]
        extra = {"ENABLE_CHANGE_STREAMS": "always", "POLL_INTERVAL": "5"}
        try:
            with fleet(1, server.uri, tmp, extra, "bench.results:answer"):
                _wait_registered(direct, 1)
                for n in range(20):  # warm up: connections, the key index, the clock
                    enqueue(work, {"_id": f"warm-{n}"}).result(30, change_stream=stream)
                finds.count = 0
                took = []
                for n in range(calls):
                    started = time.perf_counter()
                    job = enqueue(work, {"_id": f"call-{n}"})
                    assert wait(work, job.id, 30, change_stream=stream) == ANSWER
                    took.append(time.perf_counter() - started)
        finally:
            direct.close()
    return took, finds.count / calls


def cost(docs: int, handler: str, tmp: Path) -> tuple[float, float, float]:
    """Round trips per document, bytes stored per document, docs/s (10-90 %)."""

    async def run() -> tuple[float, float, float]:
        async with counted_server(tmp / "nx") as (_, counter, direct):
            uri = f"mongodb://127.0.0.1:{counter.port}/"
            with fleet(1, uri, tmp, {}, handler):
                await asyncio.to_thread(_wait_registered, direct, 1)
                before = counter.counts[COLLECTION]
                rate, _, _ = await asyncio.to_thread(drain, direct, 1, docs, counter)
                trips = counter.counts[COLLECTION] - before
            found = direct["bench"][COLLECTION].find({}, limit=100)
            stored = [len(bson.encode(d)) for d in found]
        return trips / docs, statistics.mean(stored), rate

    return asyncio.run(run())


def main(calls: int, docs: int) -> None:
    waits = Table(title=f"{calls:,} enqueue-then-wait calls, one agent process, nx-27017")
    for column in ("waiting by", "p50 ms", "p99 ms", "max ms", "finds per wait"):
        waits.add_column(column, justify="left" if column == "waiting by" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for stream in (False, True):
            where = Path(tmp) / f"latency-{stream}"
            where.mkdir()
            took, finds = latency(calls, stream, where)
            ms = sorted(t * 1000 for t in took)
            waits.add_row(
                "change stream" if stream else "polling (50 ms, x1.5, to 1 s)",
                f"{statistics.median(ms):.1f}",
                f"{ms[int(len(ms) * 0.99) - 1]:.1f}",
                f"{ms[-1]:.1f}",
                f"{finds:.2f}",
            )
        stored = Table(title=f"{docs:,} documents, one agent process, default settings")
        for column in ("handler returns", "round trips/doc", "bytes stored/doc", "docs/s"):
            stored.add_column(column, justify="left" if column == "handler returns" else "right")
        for label, handler in (("None", "nothing"), (f"{len(bson.encode(ANSWER))} B", "answer")):
            where = Path(tmp) / f"cost-{handler}"
            where.mkdir()
            trips, size, rate = cost(docs, f"bench.results:{handler}", where)
            stored.add_row(label, f"{trips:.4f}", f"{size:,.0f}", f"{rate:,.0f}")
    Console(width=120).print(waits)
    Console(width=120).print(stored)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--docs", type=int, default=2_000)
    options = parser.parse_args()
    main(options.calls, options.docs)
