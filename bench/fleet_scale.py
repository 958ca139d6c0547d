"""The queue's cost as the fleet grows: agents as separate processes draining one collection.

For each agent count, two passes against one nx-27017 server of its own:

* **at the wire**: the agents talk to the server through a proxy that reads every MongoDB
  message (OP_MSG) the agents send and counts the commands on the work collection (find,
  getMore, update, insert, delete, aggregate, findAndModify), so the agents' own counting is
  not trusted; round trips per document = those commands / documents processed while the
  backlog drained;
* **straight**: the same with the agents connected to the server directly, for docs/s.

The agents start on an empty collection and register; then the documents go in with one
``insert_many`` and the clock runs from the first claimed document to the last processed
(the rate is measured between 10 % and 90 % processed, so start-up and the last stragglers
do not count). Default settings apart from the agent count (BATCH_SIZE 100, CONCURRENCY 8,
POLL_INTERVAL 5 s) and a no-op handler. Prints a table; asserts nothing.

    python -m bench.fleet_scale [--agents 1 4 16] [--docs 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import bson
from pymongo import MongoClient
from rich.console import Console
from rich.table import Table

from pulling_agent.dev.embedded import EmbeddedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "work"
OP_MSG = 2013
HEARTBEAT = 5.0  # the agents' default HEARTBEAT_INTERVAL: how often they refresh their share
COMMANDS = {"find", "getMore", "update", "insert", "delete", "aggregate", "findAndModify"}


class WireCounter:
    """A loopback proxy that counts, per collection, the commands clients send."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.counts: Counter[str] = Counter()
        self._buffers: dict[int, bytes] = {}

    def _count(self, message: bytes) -> None:
        opcode = struct.unpack_from("<i", message, 12)[0]
        if opcode != OP_MSG or len(message) < 26 or message[20] != 0:
            return
        size = struct.unpack_from("<i", message, 21)[0]
        try:
            body = bson.decode(message[21 : 21 + size])
        except Exception:  # not a command we can read: not ours to count
            return
        name = next(iter(body), "")
        if name not in COMMANDS:
            return
        target = body.get("collection") if name == "getMore" else body.get(name)
        if isinstance(target, str):
            self.counts[target] += 1

    async def _client_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        pending = b""
        while chunk := await reader.read(65_536):
            pending += chunk
            while len(pending) >= 4:
                length = struct.unpack_from("<i", pending)[0]
                if len(pending) < length:
                    break
                self._count(pending[:length])
                pending = pending[length:]
            writer.write(chunk)
            await writer.drain()
        writer.close()

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65_536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):  # the bench ended
            await asyncio.gather(
                self._client_to_server(reader, up_writer), self._copy(up_reader, writer)
            )

    async def run(self, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        async with server:
            await stop.wait()


class Fleet:
    """``count`` agent processes on ``uri``."""

    def __init__(
        self,
        count: int,
        uri: str,
        workdir: Path,
        extra: dict[str, str] | None = None,
        handler: str = "bench.fleet_scale:noop",
    ) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        for n in range(count):
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("MONGODB_")},
                "PYTHONPATH": str(ROOT),
                "MONGODB_URI": uri,
                "MONGODB_DATABASE": "bench",
                "MONGODB_COLLECTION": COLLECTION,
                "AGENT_ID": f"agent-{n:02d}",
                "HANDLER": handler,
                "ENABLE_API": "false",
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                "HEALTH_DIR": str(workdir / f"health-{n}"),
                "CONTROL_FILE": str(workdir / "no-control"),
                **(extra or {}),
            }
            log = (workdir / f"agent-{n}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pulling_agent", "run"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def noop(document: dict[str, Any]) -> None:
    return None


@contextlib.contextmanager
def fleet(
    count: int,
    uri: str,
    workdir: Path,
    extra: dict[str, str] | None = None,
    handler: str = "bench.fleet_scale:noop",
) -> Iterator[Fleet]:
    agents = Fleet(count, uri, workdir, extra, handler)
    try:
        yield agents
    finally:
        agents.stop()


def drain(
    direct: MongoClient[dict[str, Any]],
    count: int,
    docs: int,
    counter: WireCounter | None = None,
) -> tuple[float, float, dict[float, int]]:
    """Wait for ``count`` agents to register and to know their share (one heartbeat more),
    insert ``docs`` documents, wait until all are processed. Returns docs/s between 10 % and
    90 % processed, seconds in all, and the wire count of work-collection commands at 10 %
    and 90 % (with a ``counter``)."""
    db = direct["bench"]
    _wait_registered(direct, count)
    time.sleep(HEARTBEAT + 1)  # every agent has read the registry once more since
    db[COLLECTION].insert_many([{"status": "pending", "n": i} for i in range(docs)])
    started = time.monotonic()
    marks: dict[float, float] = {}
    trips: dict[float, int] = {}
    while True:
        done = db[COLLECTION].count_documents({"status": "processed"})
        now = time.monotonic()
        for fraction in (0.1, 0.9):
            if fraction not in marks and done >= docs * fraction:
                marks[fraction] = now
                trips[fraction] = counter.counts[COLLECTION] if counter else 0
        if done >= docs:
            break
        if now - started > 600:
            raise SystemExit("the fleet did not drain in 10 minutes")
        time.sleep(0.1)
    rate = docs * 0.8 / max(1e-9, marks[0.9] - marks[0.1])
    return rate, time.monotonic() - started, trips


async def at_the_wire(count: int, docs: int, tmp: Path) -> tuple[float, float]:
    """Round trips to the work collection per document: over the whole drain, and while
    10 % to 90 % of the documents were processed (start-up and the tail left out)."""
    async with counted_server(tmp / f"nx-wire-{count}") as (_, counter, direct):
        with fleet(count, f"mongodb://127.0.0.1:{counter.port}/", tmp / f"w{count}"):
            await asyncio.to_thread(_wait_registered, direct, count)
            before = counter.counts[COLLECTION]
            _, _, marks = await asyncio.to_thread(drain, direct, count, docs, counter)
            trips = counter.counts[COLLECTION] - before
    return trips / docs, (marks[0.9] - marks[0.1]) / (docs * 0.8)


@contextlib.asynccontextmanager
async def counted_server(
    where: Path,
) -> AsyncIterator[tuple[EmbeddedServer, WireCounter, MongoClient[dict[str, Any]]]]:
    """An nx-27017 behind a counting proxy (agents go through ``counter.port``), and a
    direct client to it, for a bench that counts commands at the wire."""
    with EmbeddedServer(where) as server:
        counter = WireCounter(server.port)
        stop = asyncio.Event()
        proxy = asyncio.create_task(counter.run(stop))
        await asyncio.sleep(0.2)
        direct: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        try:
            yield server, counter, direct
        finally:
            direct.close()
            stop.set()
            await proxy


def _wait_registered(direct: MongoClient[dict[str, Any]], count: int) -> None:
    deadline = time.monotonic() + 120
    while direct["bench"]["agent_registry"].count_documents({"state": "running"}) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only some of the {count} agents came up")
        time.sleep(0.2)


def straight(count: int, docs: int, tmp: Path) -> float:
    with EmbeddedServer(tmp / f"nx-direct-{count}") as server:
        (tmp / f"d{count}").mkdir(exist_ok=True)
        direct: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        try:
            with fleet(count, server.uri, tmp / f"d{count}"):
                return drain(direct, count, docs)[0]
        finally:
            direct.close()


def with_ratios(
    values: Sequence[float], base: Sequence[float], formats: Sequence[str]
) -> list[str]:
    """Table cells: each value as ``formats`` says, then its ratio to ``base``'s."""
    cells = []
    for value, first, form in zip(values, base, formats, strict=True):
        cells += [format(value, form), f"{value / first:.2f}x"]
    return cells


async def main(counts: list[int], docs: int) -> None:
    table = Table(title=f"{docs} documents, agents as processes, one nx-27017 (2 cores)")
    for column in (
        "agents",
        "round trips/doc, whole drain",
        "vs 1",
        "round trips/doc, 10-90 %",
        "vs 1",
        "docs/s, 10-90 %",
        "vs 1",
    ):
        table.add_column(column, justify="right")
    first: tuple[float, float, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            (Path(tmp) / f"w{count}").mkdir(exist_ok=True)
            whole, steady = await at_the_wire(count, docs, Path(tmp))
            rate = straight(count, docs, Path(tmp))
            first = first or (whole, steady, rate)
            table.add_row(
                str(count), *with_ratios((whole, steady, rate), first, (".3f", ".3f", ",.0f"))
            )
            Console().print(
                f"{count} agents: {whole:.3f} / {steady:.3f} rt/doc, {rate:,.0f} docs/s"
            )
    Console(width=120).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--docs", type=int, default=8000)
    options = parser.parse_args()
    asyncio.run(main(options.agents, options.docs))
