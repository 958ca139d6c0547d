"""Faults, measured: readiness during a MongoDB outage, shutdown with MongoDB down, and
duplicates under a kill storm. Real agent processes against an embedded nx-27017 server
of their own; prints tables, asserts nothing.

    python -m bench.hardening [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from rich.console import Console
from rich.table import Table

from pulling_agent.dev.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
POLL = 0.02


class Agent:
    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.health = workdir / name / "health"
        (workdir / name).mkdir(parents=True)
        self.log = (workdir / name / "agent.log").open("wb")
        full = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MONGODB_")},
            "PYTHONPATH": str(ROOT),
            "AGENT_ID": name,
            "HEALTH_DIR": str(self.health),
            "CONTROL_FILE": str(workdir / name / "control" / "state"),
            "MONGODB_DATABASE": "bench",
            "MONGODB_COLLECTION": "work",
            "HANDLER": "tests.system.handlers:record",
            "RECORD_FILE": str(workdir / "executions.txt"),
            "LOG_FORMAT": "json",
            "API_PORT": "0",
            "POLL_INTERVAL": "0.2",
            "HEARTBEAT_INTERVAL": "0.2",
            "CONTROL_POLLING_INTERVAL": "0.5",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pulling_agent", "run"],
            env=full,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        return (self.health / "readiness").exists()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def until(predicate: Callable[[], bool], timeout: float = 120) -> float:
    """Seconds until ``predicate`` holds (polled every 20 ms)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(POLL)
    return time.monotonic() - started


@contextmanager
def server(workdir: Path) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(workdir / "server").start()
    try:
        yield srv
    finally:
        srv.stop()


def insert(uri: str, n: int, **fields: Any) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    client.bench.work.insert_many([{"status": "pending", "n": i, **fields} for i in range(n)])
    client.close()


def outage(outage_seconds: float, down_for: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as srv:
        insert(srv.uri, 20)
        agent = Agent(
            "a", Path(tmp), {"MONGODB_URI": srv.uri, "STORE_OUTAGE_SECONDS": str(outage_seconds)}
        )
        try:
            until(agent.ready)
            srv.stop()
            killed = time.monotonic()
            samples = ready = 0
            dropped = None
            while time.monotonic() - killed < down_for:
                samples += 1
                ready += agent.ready()
                if dropped is None and not agent.ready():
                    dropped = time.monotonic() - killed
                time.sleep(0.1)
            srv.start()
            recovered = until(agent.ready)
            return {
                "drop": dropped if dropped is not None else float("nan"),
                "ready_samples": ready,
                "samples": samples,
                "recover": recovered,
            }
        finally:
            agent.stop()


def shutdown_down(shutdown_timeout: float) -> float:
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as srv:
        insert(srv.uri, 30)
        agent = Agent(
            "a",
            Path(tmp),
            {
                "MONGODB_URI": srv.uri,
                "HANDLER": "tests.system.handlers:hang",
                "SHUTDOWN_TIMEOUT": str(shutdown_timeout),
                "CONCURRENCY": "2",
            },
        )
        try:
            client: MongoClient[dict[str, Any]] = MongoClient(srv.uri)
            until(lambda: client.bench.work.count_documents({"status": "processing"}) >= 2)
            client.close()
            srv.stop()
            agent.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            agent.process.wait(timeout=shutdown_timeout + 60)
            return time.monotonic() - started
        finally:
            agent.stop()


def kill_storm(kills: int, total: int = 600) -> tuple[int, int]:
    batch, concurrency = 10, 4
    settings = {
        "BATCH_SIZE": str(batch),
        "CONCURRENCY": str(concurrency),
        "LEASE_SECONDS": "2",
        "HANDLER_SLEEP": "0.01",
    }
    with tempfile.TemporaryDirectory() as tmp, server(Path(tmp)) as srv:
        insert(srv.uri, total)
        record = Path(tmp) / "executions.txt"
        settings["MONGODB_URI"] = srv.uri
        agents = [Agent(f"a{i}", Path(tmp), settings) for i in range(3)]
        try:
            for kill in range(kills):
                done = _runs(record)
                until(lambda d=done: _runs(record) > d + 20)  # type: ignore[misc]
                victim = agents.pop(0)
                victim.stop()
                agents.append(Agent(f"r{kill}", Path(tmp), settings))
            client: MongoClient[dict[str, Any]] = MongoClient(srv.uri)
            until(lambda: client.bench.work.count_documents({"status": "processed"}) == total)
            client.close()
            counts = Counter(line.split()[0] for line in record.read_text().splitlines())
            return sum(counts.values()) - total, kills * (batch * 3 // 2 + concurrency)
        finally:
            for agent in agents:
                agent.stop()


def _runs(record: Path) -> int:
    try:
        return len(record.read_text().splitlines())
    except FileNotFoundError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    console = Console()

    table = Table(title="MongoDB outage: readiness (server killed, restarted after the window)")
    for column in (
        "STORE_OUTAGE_SECONDS",
        "outage",
        "readiness dropped after",
        "ready samples during outage",
        "ready again after restart",
    ):
        table.add_column(column, justify="right")
    for threshold, down_for in ((10.0, 15.0), (2.0, 5.0), (2.0, 40.0)):
        results = [outage(threshold, down_for) for _ in range(args.runs)]
        table.add_row(
            f"{threshold:g}",
            f"{down_for:g} s",
            f"{statistics.median(r['drop'] for r in results):.1f} s (median)",
            f"{sum(int(r['ready_samples']) for r in results)}/"
            f"{sum(int(r['samples']) for r in results)}",
            f"{statistics.median(r['recover'] for r in results):.1f} s (median)",
        )
    console.print(table)

    table = Table(title="Shutdown with MongoDB down (two handlers hanging), SIGTERM to exit")
    for column in ("SHUTDOWN_TIMEOUT", "exit after (median)", "max", "bound"):
        table.add_column(column, justify="right")
    for timeout in (5.0, 30.0):
        times = [shutdown_down(timeout) for _ in range(args.runs)]
        table.add_row(
            f"{timeout:g} s",
            f"{statistics.median(times):.1f} s",
            f"{max(times):.1f} s",
            f"{timeout + 8:g} s (grace {timeout + 10:g} s)",
        )
    console.print(table)

    table = Table(title="Kill storm: 3 agents, SIGKILL + respawn, 600 documents")
    for column in ("kills", "duplicate runs", "bound (kills x held per agent)"):
        table.add_column(column, justify="right")
    for _ in range(args.runs):
        duplicates, bound = kill_storm(10)
        table.add_row("10", str(duplicates), str(bound))
    console.print(table)


if __name__ == "__main__":
    main()
