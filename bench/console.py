"""What an open web console costs a running agent, and how fast its pages load.

One nx-27017 server, a collection of ``--docs`` documents (``--failed`` and ``--pending``
shares, the rest processed; about 2,000 kept pending by turning processed ones back), one agent
in this process with its API on a loopback port and a no-op handler. Measures the agent's
documents per second for ``--seconds`` without a console, then with one browser-like client
(another process) that refreshes one view every 2 s as an open console tab does - the
overview, the dead letter, the agents, each after a window without - then the load time of
each full page (``--samples`` each, p50/p95).
Prints tables; asserts nothing.

    python -m bench.console [--docs 100000] [--seconds 20] [--samples 20] [--failed 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId
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
TABS = {"overview": "partials/overview", "dead letter": "partials/dlq", "agents": "partials/agents"}
CHUNK = 5_000


async def noop(document: dict[str, Any]) -> None:
    return None


async def fill(client: Client, n: int, failed: float, pending: float) -> None:
    """``n`` documents: a ``failed`` share in the dead letter, a ``pending`` share to do,
    the rest processed."""
    work = client.bench.work
    await work.drop()
    now = datetime.now(UTC)
    for start in range(0, n, CHUNK):
        docs: list[dict[str, Any]] = []
        for i in range(start, min(n, start + CHUNK)):
            share = (i * 7919 % 1000) / 1000  # spread evenly over the _id range
            if share < failed:
                error = {"type": "ValueError", "message": f"bad {i}", "traceback": "", "at": now}
                doc = {"status": "failed", "attempts": 5, "failed_at": now, "error": error}
            elif share < failed + pending:
                doc = {"status": "pending"}
            else:
                doc = {"status": "processed", "processed_at": now}
            docs.append({"_id": ObjectId.from_datetime(now - timedelta(seconds=n - i)), **doc})
        await work.insert_many(docs)


async def top_up(client: Client, node: Any, stop: asyncio.Event) -> None:
    """Keep about 2,000 documents pending (processed ones go back to pending), so that the
    agent never runs dry and the collection keeps its size: nx-27017's writes scan it."""
    work = client.bench.work
    counters = node.agent.pipeline.counters
    pending = len(await work.find({"status": "pending"}, {"_id": 1}).to_list())
    claimed = counters.claimed
    while not stop.is_set():
        if pending - (counters.claimed - claimed) < 2_000:
            done = await work.find({"status": "processed"}, {"_id": 1}, limit=1_000).to_list()
            ids = [d["_id"] for d in done]
            await work.update_many(
                {"_id": {"$in": ids}, "status": "processed"},
                {"$set": {"status": "pending"}, "$unset": {"processed_at": ""}},
            )
            pending += len(ids)
        await wait_event(stop, 0.2)


async def rate(client: Client, node: Any, seconds: float) -> float:
    counters = node.agent.pipeline.counters
    stop = asyncio.Event()
    feeder = asyncio.create_task(top_up(client, node, stop))
    before, started = counters.processed, time.perf_counter()
    await asyncio.sleep(seconds)
    processed = counters.processed - before
    elapsed = time.perf_counter() - started
    stop.set()
    await feeder
    return float(processed) / elapsed


def console_tab(base: str, seconds: float, partial: str) -> int:
    """An open console tab, in its own process as a browser would be: its view's partial
    every 2 s (what the page's script does). Returns how many it loaded."""
    loads = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/ui/overview")  # the anonymous session (no tokens: loopback)
        while time.monotonic() < deadline:
            http.get(f"/ui/{partial}")
            loads += 1
            time.sleep(2.0)
    return loads


async def in_other_process(function: Any, *args: Any) -> Any:
    with ProcessPoolExecutor(max_workers=1) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, function, *args)


def page_times(base: str, samples: int) -> dict[str, list[float]]:
    """Full page loads from another process, in milliseconds."""
    times: dict[str, list[float]] = {p: [] for p in PAGES}
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/ui/overview")
        for _ in range(samples):
            for page in PAGES:
                started = time.perf_counter()
                response = http.get(f"/ui/{page}")
                times[page].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            time.sleep(0.2)
    return times


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


async def main(docs: int, seconds: float, samples: int, failed: float, pending: float) -> None:
    configure_logging("ERROR")
    out = Console(width=120)
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        client: Client = AsyncMongoClient(server.uri, tz_aware=True)
        started = time.perf_counter()
        await fill(client, docs, failed, pending)
        out.print(
            f"filled {docs:,} documents ({failed:.0%} failed, {pending:.0%} pending) "
            f"in {time.perf_counter() - started:.0f} s"
        )
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
        # alternate, since the collection grows as the run goes (nx-27017's writes scan it)
        rows: list[tuple[str, float, int]] = []
        for view, partial in TABS.items():
            rows.append(("none open", await rate(client, node, seconds), 0))
            tab = asyncio.create_task(in_other_process(console_tab, base, seconds + 1, partial))
            await asyncio.sleep(0.5)  # the tab's process started and loaded its first page
            with_console = await rate(client, node, seconds)
            rows.append((f"{view} open, refreshing every 2 s", with_console, await tab))
        times = await in_other_process(page_times, base, samples)
        node.agent.request_shutdown("bench done")
        await task
        await client.close()

    table = Table(title=f"Agent throughput with {docs:,} documents, no-op handler, nx-27017")
    for column in ("console", "docs/s", "partial loads"):
        table.add_column(column, justify="left" if column == "console" else "right")
    for label, value, loads in rows:
        table.add_row(label, f"{value:,.1f}", str(loads))
    out.print(table)
    pages = Table(title=f"Full page load, {samples} samples each, another process, loopback")
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
    parser.add_argument("--failed", type=float, default=0.2, help="share in the dead letter")
    parser.add_argument("--pending", type=float, default=0.2, help="share pending at first")
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.seconds, args.samples, args.failed, args.pending))
