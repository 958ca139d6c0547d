"""What an open web console costs a running agent, and how fast its pages load.

One nx-27017 server, a collection of ``--docs`` documents (60 % processed, 20 % failed,
20 % pending at first, the pending ones topped up so the agent never runs dry), one agent
in this process with its API on a loopback port and a no-op handler. Measures the agent's
documents per second for ``--seconds`` without a console, then with one browser-like
client that refreshes the overview, agents and dead-letter partials every 2 s (what an
open console tab does), then the load time of each full page (``--samples`` each, p50/p95).
Prints tables; asserts nothing.

    python -m bench.console [--docs 100000] [--seconds 20] [--samples 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

from pulling_agent.bootstrap import build_node
from pulling_agent.config import load_settings
from pulling_agent.embedded import EmbeddedServer
from pulling_agent.logs import configure_logging
from pulling_agent.state import AgentState
from pulling_agent.timeouts import wait_event

Client = AsyncMongoClient[dict[str, Any]]
PAGES = ["overview", "agents", "dlq", "document?id=1", "jobs", "control"]
REFRESHED = ["partials/overview", "partials/agents", "partials/dlq"]
CHUNK = 5_000


async def noop(document: dict[str, Any]) -> None:
    return None


async def fill(client: Client, n: int) -> None:
    work = client.bench.work
    await work.drop()
    now = datetime.now(UTC)
    for start in range(0, n, CHUNK):
        docs: list[dict[str, Any]] = []
        for i in range(start, min(n, start + CHUNK)):
            kind = i % 10
            if kind < 6:
                docs.append({"_id": i, "status": "processed", "processed_at": now})
            elif kind < 8:
                error = {"type": "ValueError", "message": f"bad {i}", "traceback": "", "at": now}
                docs.append(
                    {"_id": i, "status": "failed", "attempts": 5, "failed_at": now, "error": error}
                )
            else:
                docs.append({"_id": i, "status": "pending"})
        await work.insert_many(docs)


async def processed(client: Client) -> int:
    rows = await (
        await client.bench.work.aggregate([{"$match": {"status": "processed"}}, {"$count": "n"}])
    ).to_list()
    return int(rows[0]["n"]) if rows else 0


async def rate(node: Any, seconds: float) -> float:
    counters = node.agent.pipeline.counters
    before, started = counters.processed, time.perf_counter()
    await asyncio.sleep(seconds)
    return float(counters.processed - before) / (time.perf_counter() - started)


async def console_tab(base: str, stop: asyncio.Event) -> int:
    """Refresh like an open console: the visible view's partials every 2 s."""
    loads = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await http.get("/ui/overview")  # the anonymous session (no tokens: loopback)
        while not stop.is_set():
            for path in REFRESHED:
                await http.get(f"/ui/{path}")
                loads += 1
            await wait_event(stop, 2.0)
    return loads


async def page_times(base: str, samples: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {p: [] for p in PAGES}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await http.get("/ui/overview")
        for _ in range(samples):
            for page in PAGES:
                started = time.perf_counter()
                response = await http.get(f"/ui/{page}")
                times[page].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            await asyncio.sleep(0.2)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]


async def main(docs: int, seconds: float, samples: int) -> None:
    configure_logging("ERROR")
    out = Console(width=120)
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        client: Client = AsyncMongoClient(server.uri, tz_aware=True)
        started = time.perf_counter()
        await fill(client, docs)
        out.print(f"filled {docs:,} documents in {time.perf_counter() - started:.0f} s")
        settings = load_settings(
            mongodb_uri=server.uri,
            mongodb_database="bench",
            mongodb_collection="work",
            agent_id="bench",
            api_port=0,
            health_dir=Path(tmp) / "health",
            control_file=Path(tmp) / "no-control",
            enable_change_streams="false",
            log_level="ERROR",
            sweep_interval=3600,
        )
        node = build_node(settings, client, noop)
        task = asyncio.create_task(node.agent.run(install_signals=False))
        while node.agent.state is not AgentState.RUNNING or node.api is None or not node.api.port:
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{node.api.port}"
        await asyncio.sleep(2)  # past start-up
        without = await rate(node, seconds)
        stop = asyncio.Event()
        tab = asyncio.create_task(console_tab(base, stop))
        with_console = await rate(node, seconds)
        stop.set()
        loads = await tab
        times = await page_times(base, samples)
        node.agent.request_shutdown("bench done")
        await task
        await client.close()

    table = Table(title=f"Agent throughput with {docs:,} documents, no-op handler, nx-27017")
    for column in ("console", "docs/s", "partial loads"):
        table.add_column(column, justify="left" if column == "console" else "right")
    table.add_row("none open", f"{without:,.1f}", "0")
    table.add_row("one tab refreshing every 2 s", f"{with_console:,.1f}", str(loads))
    out.print(table)
    pages = Table(title=f"Full page load, {samples} samples each (same process, loopback)")
    for column in ("page", "p50 ms", "p95 ms", "max ms"):
        pages.add_column(column, justify="left" if column == "page" else "right")
    for page, values in times.items():
        pages.add_row(
            page, f"{statistics.median(values):.0f}", f"{p95(values):.0f}", f"{max(values):.0f}"
        )
    out.print(pages)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.seconds, args.samples))
