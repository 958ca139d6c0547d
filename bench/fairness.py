"""Fair claiming, measured with agents as separate processes (issue 25).

Tenant A enqueues ``--a-docs`` documents (100,000), then tenants B..K 100 each; the agents
(``--agents`` processes, CONCURRENCY 8, a handler that sleeps ``--sleep`` seconds) drain
the queue with ``CONCURRENCY_KEY=tenant``, once with fair claiming and once without
(``FAIR_CLAIMING=false``: the queue's head, in arrival order). Baselines: B's 100 alone, A's
documents alone. For every tenant: the wait of its documents from their enqueue to their
end (p50, p99, the last), against the same alone; for A: its drain rate against its rate
alone. Prints tables; asserts nothing.

    python -m bench.fairness [--a-docs 100000] [--agents 2] [--sleep 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from rich.console import Console
from rich.table import Table

from bench.fleet_scale import _wait_registered, fleet
from pulling_agent.dev.embedded import EmbeddedServer

SMALL = [chr(c) for c in range(ord("B"), ord("K") + 1)]  # ten tenants of 100 documents
SMALL_DOCS = 100


async def record(document: dict[str, Any]) -> None:
    """Sleep HANDLER_SLEEP, then append ``n time`` to RECORD_FILE (one O_APPEND write)."""
    await asyncio.sleep(float(os.environ["HANDLER_SLEEP"]))
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{document['n']} {time.time()}\n".encode())
    finally:
        os.close(fd)


Groups = list[tuple[str, int]]


def run(groups: Groups, fair: bool, agents: int, sleep: float, tmp: Path, label: str) -> Any:
    """Drain ``groups`` (tenant, documents; enqueued in this order); returns per tenant the
    waits (seconds from the tenant's enqueue to each document's end) and its drain span."""
    workdir = tmp / label
    workdir.mkdir()
    record_file = workdir / "done.txt"
    extra = {
        "CONCURRENCY_KEY": "tenant",
        "FAIR_CLAIMING": "true" if fair else "false",
        "RECORD_FILE": str(record_file),
        "HANDLER_SLEEP": str(sleep),
        "POLL_INTERVAL": "0.5",
    }
    tenant_of: list[str] = []
    enqueued: dict[str, float] = {}
    with EmbeddedServer(workdir / "nx") as server:
        direct: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        work = direct["bench"]["work"]
        try:
            with fleet(agents, server.uri, workdir, extra, "bench.fairness:record"):
                _wait_registered(direct, agents)
                for tenant, count in groups:
                    first = len(tenant_of)
                    tenant_of += [tenant] * count
                    for start in range(first, first + count, 10_000):
                        end = min(start + 10_000, first + count)
                        work.insert_many(
                            [
                                {"status": "pending", "n": n, "tenant": tenant}
                                for n in range(start, end)
                            ]
                        )
                    enqueued[tenant] = time.time()
                deadline = time.monotonic() + 1800
                while _lines(record_file) < len(tenant_of):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{label}: not drained in 30 minutes")
                    time.sleep(0.2)
        finally:
            direct.close()
    waits: dict[str, list[float]] = {t: [] for t, _ in groups}
    ends: dict[str, list[float]] = {t: [] for t, _ in groups}
    for line in record_file.read_text().splitlines():
        n, at = line.split()
        tenant = tenant_of[int(n)]
        waits[tenant].append(float(at) - enqueued[tenant])
        ends[tenant].append(float(at))
    return waits, {t: (min(e), max(e)) for t, e in ends.items()}, enqueued


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(a_docs: int, agents: int, sleep: float) -> None:
    console = Console(width=140)
    mixed: Groups = [("A", a_docs)] + [(t, SMALL_DOCS) for t in SMALL]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        alone_waits, _, _ = run([("B", SMALL_DOCS)], True, agents, sleep, base, "b-alone")
        solo: dict[bool, float] = {}
        for fair in (True, False):
            _, a_span, a_enq = run([("A", a_docs)], fair, agents, sleep, base, f"a-alone-{fair}")
            solo[fair] = a_docs / (a_span["A"][1] - a_enq["A"])
        a_solo = solo[True]
        results = {
            fair: run(mixed, fair, agents, sleep, base, f"mixed-{fair}") for fair in (True, False)
        }
    alone = alone_waits["B"]
    table = Table(
        title=f"Fairness: A enqueues {a_docs:,}, then B..K {SMALL_DOCS} each; {agents} agents "
        f"(processes), CONCURRENCY 8, handler {sleep * 1000:.0f} ms, nx-27017, 2 cores"
    )
    for column in (
        "claiming",
        "tenant",
        "p50 wait s",
        "p99 wait s",
        "last done s",
        "last vs alone",
    ):
        table.add_column(column, justify="left" if column in ("claiming", "tenant") else "right")
    table.add_row(
        "alone",
        "B (100)",
        f"{pct(alone, 0.5):.2f}",
        f"{pct(alone, 0.99):.2f}",
        f"{max(alone):.2f}",
        "1.0x",
    )
    for fair, (waits, span, enqueued) in results.items():
        name = "fair" if fair else "head (FAIR_CLAIMING=false)"
        for tenant in SMALL:
            w = waits[tenant]
            table.add_row(
                name,
                tenant,
                f"{pct(w, 0.5):.2f}",
                f"{pct(w, 0.99):.2f}",
                f"{max(w):.2f}",
                f"{max(w) / max(alone):.1f}x",
            )
        a_rate = a_docs / (span["A"][1] - enqueued["A"])
        table.add_row(
            name,
            "A",
            f"{pct(waits['A'], 0.5):.1f}",
            f"{pct(waits['A'], 0.99):.1f}",
            f"{max(waits['A']):.1f}",
            f"rate {a_rate:,.0f}/s = {a_rate / a_solo:.2f}x alone",
        )
    console.print(table)
    small_ratio = {
        fair: max(max(results[fair][0][t]) for t in SMALL) / max(alone) for fair in results
    }
    console.print(
        f"A alone: {solo[True]:,.0f} docs/s fair, {solo[False]:,.0f} docs/s from the head "
        f"({solo[True] / solo[False]:.2f}x). B..K's last document vs alone: fair "
        f"{small_ratio[True]:.1f}x, head {small_ratio[False]:.1f}x "
        f"(median p50 fair {statistics.median(pct(results[True][0][t], 0.5) for t in SMALL):.2f} s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a-docs", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.002)
    options = parser.parse_args()
    main(options.a_docs, options.agents, options.sleep)
