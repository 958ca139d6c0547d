"""``pulling-agent demo``: the whole system on sample work, with no setup.

Starts the embedded MongoDB-wire server (unless ``MONGODB_URI`` is set, in which case it
uses that server's ``pulling_agent_demo`` database and replaces its ``work`` collection),
inserts sample documents (a few fail once, a few always fail), runs several agents side by
side with the built-in demo handler, shows live progress, and prints a summary.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pulling_agent.config import ChangeStreams, LogFormat, Settings, load_settings
from pulling_agent.errors import PullingAgentError, StoreUnavailable
from pulling_agent.logs import configure_logging
from pulling_agent.queue.database import describe_failure, open_client
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.runtime.agent import Agent
from pulling_agent.runtime.handlers import Document, HandlerRunner

DEMO_DATABASE = "pulling_agent_demo"
DEMO_COLLECTION = "work"
DEADLINE = 50.0


class DemoFailure(PullingAgentError):
    """Raised on purpose by the demo handler."""


async def demo_handler(document: Document) -> None:
    """Pretend to work for a few milliseconds; ``flaky`` documents fail their first attempt,
    ``poison`` documents always fail (and end in the dead letter)."""
    await asyncio.sleep(random.uniform(0.02, 0.06))
    kind = document.get("kind")
    if kind == "poison":
        raise DemoFailure(f"document {document['n']} can never be processed")
    if kind == "flaky" and document.get("attempts", 1) < 2:
        raise DemoFailure(f"document {document['n']} failed its first attempt")


def sample_documents(count: int) -> list[Document]:
    docs = []
    for n in range(count):
        kind = "poison" if n % 37 == 5 else "flaky" if n % 11 == 3 else "ok"
        docs.append({"status": "pending", "n": n, "kind": kind, "payload": f"item-{n}"})
    return docs


def _agent_settings(uri: str, index: int, workdir: Path) -> Settings:
    return load_settings(
        mongodb_uri=uri,
        mongodb_database=DEMO_DATABASE,
        mongodb_collection=DEMO_COLLECTION,
        agent_id=f"demo-agent-{index + 1}",
        batch_size=25,
        concurrency=4,
        max_attempts=3,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        poll_interval=0.25,
        sweep_interval=1.0,  # nx-27017 keeps retried documents' dates as text: sweep often
        lease_seconds=10,
        shutdown_timeout=5,
        heartbeat_interval=1,
        health_dir=workdir / f"health-{index + 1}",
        control_file=workdir / "control" / "state",
        enable_change_streams=ChangeStreams.OFF,
        log_level="ERROR",
    )


def _progress(counts: dict[str, int], agents: list[Agent], elapsed: float) -> Table:
    table = Table(title=f"pulling-agent demo — {elapsed:4.1f}s")
    for column in ("pending", "processing", "processed", "failed"):
        table.add_column(column, justify="right")
    table.add_row(
        *(str(counts.get(k, 0)) for k in ("pending", "processing", "processed", "failed"))
    )
    per_agent = Table(show_header=True, box=None)
    for column in ("agent", "state", "processed", "retried", "dead letter"):
        per_agent.add_column(column)
    for agent in agents:
        c = agent.pipeline.counters
        per_agent.add_row(
            agent.settings.agent_id,
            agent.state.value,
            str(c.processed),
            str(c.retried),
            str(c.failed),
        )
    outer = Table.grid()
    outer.add_row(table)
    outer.add_row(per_agent)
    return outer


async def _run(uri: str, documents: int, agent_count: int, workdir: Path, console: Console) -> int:
    settings = [_agent_settings(uri, i, workdir) for i in range(agent_count)]
    client = open_client(settings[0], quick=True)  # an unreachable server: 5 s, not 30
    try:
        collection = client[DEMO_DATABASE][DEMO_COLLECTION]
        try:
            await collection.drop()
            await collection.insert_many(sample_documents(documents))
        except Exception as exc:  # one line, with what to check
            raise StoreUnavailable(describe_failure(exc, settings[0].secrets())) from None
        store = MongoWorkStore(collection)
        runners = [HandlerRunner(demo_handler, s.concurrency, None) for s in settings]
        agents = [
            Agent(s, MongoWorkStore(collection), r) for s, r in zip(settings, runners, strict=True)
        ]
        started = time.monotonic()
        tasks = [asyncio.create_task(a.run(install_signals=False)) for a in agents]
        counts: dict[str, int] = {}
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            while time.monotonic() - started < DEADLINE:
                counts = await store.counts()
                live.update(_progress(counts, agents, time.monotonic() - started))
                if not counts.get("pending") and not counts.get("processing"):
                    break
                await asyncio.sleep(0.2)
            for agent in agents:
                agent.request_shutdown("demo finished")
            codes = await asyncio.gather(*tasks)
            counts = await store.counts()
            live.update(_progress(counts, agents, time.monotonic() - started))
        elapsed = time.monotonic() - started
        console.print()
        _summary(console, counts, agents, elapsed, documents)
        finished = not counts.get("pending") and not counts.get("processing")
        return 0 if finished and not any(codes) else 1
    finally:
        await client.close()


def _summary(
    console: Console, counts: dict[str, int], agents: list[Agent], elapsed: float, total: int
) -> None:
    retried = sum(a.pipeline.counters.retried for a in agents)
    table = Table(title="Summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("documents", total),
        ("processed", counts.get("processed", 0)),
        ("retries (failed once, then succeeded or retried again)", retried),
        ("dead letter (failed every attempt)", counts.get("failed", 0)),
        ("left pending or processing", counts.get("pending", 0) + counts.get("processing", 0)),
        ("agents", len(agents)),
        ("seconds", f"{elapsed:.1f}"),
        ("documents per second (the demo handler works 20-60 ms each)", f"{total / elapsed:.0f}"),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    console.print(table)
    console.print(
        "Nothing was lost: dead-letter documents stay listable and requeueable with "
        "[bold]pulling-agent dlq list[/bold] and [bold]pulling-agent dlq requeue --all[/bold] "
        "against your own MongoDB (the demo's embedded server stops with the demo; run the "
        "demo with MONGODB_URI set to keep its collection)."
    )


def run_demo(documents: int = 600, agents: int = 3) -> int:
    console = Console()
    configure_logging("ERROR", LogFormat.CONSOLE)
    with ExitStack() as stack:
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="pulling-agent-demo-"))
        )
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            from pulling_agent.dev.embedded import EmbeddedServer

            server = stack.enter_context(EmbeddedServer(workdir / "server"))
            uri = server.uri
            console.print(f"Embedded MongoDB-wire server (nx-27017) on {uri}")
        return asyncio.run(_run(uri, documents, agents, workdir, console))
