"""What an open web console costs a running agent, and how fast its pages load.

One nx-27017 server, a collection of ``--docs`` documents (``--failed`` and ``--pending``
shares, the rest processed; about 2,000 kept pending by turning processed ones back), one agent
in this process with its API on a loopback port and a no-op handler. Measures the agent's
documents per second in ``--pairs`` pairs of adjacent ``--seconds`` windows, one with a
browser-like client (another process) refreshing one view every 2 s as an open console tab
does, one without, in random order (the agent's rate drifts over a run on nx-27017; the two
windows of a pair share the drift); then the load time of each full page (``--samples``
each, p50/p95).
Prints tables; asserts nothing.

    python -m bench.console [--docs 100000] [--pairs 8] [--seconds 5] [--failed 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
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
from pulling_agent.dev.embedded import EmbeddedServer
from pulling_agent.logs import configure_logging
from pulling_agent.runtime.state import AgentState
from pulling_agent.timeouts import wait_event

Client = AsyncMongoClient[dict[str, Any]]
PAGES = ["overview", "agents", "dlq", "document?id=1", "jobs", "control"]
TABS = {"overview": "partials/overview", "dead letter": "partials/dlq"}
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


def console_tab(base: str, partial: str, refreshing: Any, done: Any) -> None:
    """An open console tab, in its own process as a browser is: while ``refreshing`` is
    set, its view's partial every 2 s (what the page's script does)."""
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/ui/overview")  # the anonymous session (no tokens: loopback)
        while not done.is_set():
            if refreshing.is_set():
                http.get(f"/ui/{partial}")
            done.wait(2.0)


async def paired(
    client: Client, node: Any, base: str, partial: str, pairs: int, seconds: float
) -> list[tuple[float, float]]:
    """``pairs`` adjacent windows without and with the tab refreshing, in random order
    within each pair: the agent's rate drifts over a run, adjacent windows share it."""
    refreshing, done = multiprocessing.Event(), multiprocessing.Event()
    tab = multiprocessing.Process(target=console_tab, args=(base, partial, refreshing, done))
    tab.start()
    results = []
    try:
        for _ in range(pairs):
            measured = {}
            for open_ in random.sample([False, True], 2):
                if open_:
                    refreshing.set()
                else:
                    refreshing.clear()
                measured[open_] = await rate(client, node, seconds)
            results.append((measured[False], measured[True]))
    finally:
        done.set()
        tab.join(timeout=30)
    return results


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


async def main(
    docs: int, seconds: float, pairs: int, samples: int, failed: float, pending: float
) -> None:
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
        results = {
            view: await paired(client, node, base, partial, pairs, seconds)
            for view, partial in TABS.items()
        }
        times = await in_other_process(page_times, base, samples)
        node.agent.request_shutdown("bench done")
        await task
        await client.close()

    table = Table(
        title=f"Agent throughput with {docs:,} documents, no-op handler, nx-27017: "
        f"{pairs} pairs of adjacent {seconds:g} s windows per view"
    )
    for column in (
        "view open",
        "docs/s closed (median)",
        "docs/s open (median)",
        "open / closed: median",
        "min",
        "max",
    ):
        table.add_column(column, justify="left" if column == "view open" else "right")
    for view, pairs_measured in results.items():
        ratios = [o / c for c, o in pairs_measured if c > 0]
        table.add_row(
            view,
            f"{statistics.median(c for c, _ in pairs_measured):,.0f}",
            f"{statistics.median(o for _, o in pairs_measured):,.0f}",
            f"{statistics.median(ratios):.2f}",
            f"{min(ratios):.2f}",
            f"{max(ratios):.2f}",
        )
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
    parser.add_argument("--seconds", type=float, default=5.0, help="per window")
    parser.add_argument("--pairs", type=int, default=8, help="window pairs per view")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--failed", type=float, default=0.2, help="share in the dead letter")
    parser.add_argument("--pending", type=float, default=0.2, help="share pending at first")
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.seconds, args.pairs, args.samples, args.failed, args.pending))
