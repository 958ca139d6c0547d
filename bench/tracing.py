"""What tracing costs (issue 27): agent CPU per document and throughput, with no tracer
provider, and with OpenTelemetry's SDK exporting to memory. Prints tables; asserts nothing.

    python -m bench.tracing [--docs 20000] [--repeats 5]

CPU is measured over the in-memory store (the pipeline's own work: spans, links, context
extraction), the median of ``--repeats`` runs, each mode in turn so drift hits them all.
Throughput and round trips per document are one agent against nx-27017 on loopback.
The SDK rows: ``SimpleSpanProcessor`` exports each span as it ends (the worst case);
``BatchSpanProcessor`` is what production uses (export off the event loop, in a thread).
"traced" documents carry a producer's ``trace_context`` (parent and links to extract);
"plain" ones do not (each attempt starts a trace of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

from bench.throughput import CommandCounter, agents, cpu_per_document
from pulling_agent.dev.embedded import EmbeddedServer
from pulling_agent.logs import configure_logging
from pulling_agent.queue.tracecontext import TRACE

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
MODES: dict[str, Callable[[InMemorySpanExporter], SpanProcessor] | None] = {
    "no tracer provider": None,
    "SDK, SimpleSpanProcessor, in-memory exporter": SimpleSpanProcessor,
    "SDK, BatchSpanProcessor, in-memory exporter": BatchSpanProcessor,
}


def docs(n: int, traced: bool) -> list[dict[str, Any]]:
    extra = {TRACE: {"traceparent": PARENT}} if traced else {}
    return [{"status": "pending", "n": i, **extra} for i in range(n)]


@contextmanager
def provider(make: Callable[[InMemorySpanExporter], SpanProcessor] | None) -> Iterator[None]:
    """The process's tracer provider for the block (none for ``None``)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    made = None
    if make is not None:
        made = TracerProvider()
        made.add_span_processor(make(InMemorySpanExporter()))
        trace.set_tracer_provider(made)
    try:
        yield
    finally:
        if made is not None:
            made.shutdown()
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None


async def fill(uri: str, n: int, traced: bool) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    await client.bench.work.drop()
    await client.bench.work.insert_many(docs(n, traced))
    await client.close()


async def main(n: int, repeats: int, wire_docs: int) -> None:
    configure_logging("ERROR")
    console = Console(width=130)
    cpu: dict[tuple[str, bool], list[float]] = {}
    wire: dict[tuple[str, bool], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for _ in range(repeats):
            for mode, make in MODES.items():
                for traced in (False, True):
                    with provider(make):
                        used = await cpu_per_document(n, 100, workdir, docs(n, traced))
                    cpu.setdefault((mode, traced), []).append(used)
        with EmbeddedServer() as server:
            for mode, make in MODES.items():
                for traced in (False, True):
                    await fill(server.uri, wire_docs, traced)
                    counter = CommandCounter()
                    with provider(make):
                        elapsed = await agents(server.uri, wire_docs, 1, 100, counter, workdir)
                    wire[mode, traced] = (wire_docs / elapsed, counter.count / wire_docs)
    base = statistics.median(cpu["no tracer provider", False])
    table = Table(
        title=f"Tracing cost: agent CPU per document (in-memory store, {n:,} docs, median "
        f"of {repeats}) and one agent on nx-27017 ({wire_docs:,} docs), no-op handler"
    )
    for column in (
        "tracer provider",
        "documents",
        "CPU µs/doc",
        "vs off",
        "spread",
        "docs/s (nx)",
        "round trips/doc",
    ):
        table.add_column(
            column, justify="left" if column in ("tracer provider", "documents") else "right"
        )
    for (mode, traced), values in cpu.items():
        median = statistics.median(values)
        rate, trips = wire[mode, traced]
        table.add_row(
            mode,
            "traced" if traced else "plain",
            f"{median:.1f}",
            f"{median / base:.2f}x",
            f"{min(values):.1f}-{max(values):.1f}",
            f"{rate:,.0f}",
            f"{trips:.3f}",
        )
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--wire-docs", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.repeats, args.wire_docs))
