"""Fleet-wide limits through faults, with agents as real processes: never more documents of
a limited type or key value running at once than its limit, while agents are SIGKILLed and
replaced and while MongoDB itself restarts; every document is processed."""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from pulling_agent.dev.embedded import EmbeddedServer
from tests.conftest import wait_until
from tests.system.conftest import statuses

pytestmark = pytest.mark.system

TENANTS = 8
PER_TENANT = 30  # half invoices, half emails
INVOICES = 3  # TYPE_FLEET_CONCURRENCY
KILLS = 4
LEASE = 2


def spans(record: Path, killed: dict[int, float]) -> list[tuple[int, int, float, float]]:
    """``(n, pid, start, end)`` of every handler run; a run its agent's SIGKILL cut short
    ends when the kill was sent."""
    started: dict[tuple[int, int], float] = {}
    runs = []
    for line in record.read_text().splitlines():
        mark, n, pid, at = line.split()
        key = (int(n), int(pid))
        if mark == "s":
            started[key] = float(at)
        else:
            runs.append((*key, started.pop(key), float(at)))
    for (doc_n, doc_pid), start in started.items():
        assert doc_pid in killed, f"document {doc_n} started in {doc_pid}, never ended, it lived"
        runs.append((doc_n, doc_pid, start, killed[doc_pid]))
    return runs


def most_at_once(runs: list[tuple[float, float]]) -> int:
    """The most intervals open at one time (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_limits_hold_through_a_kill_storm_and_a_server_restart(
    spawn: Any, own_server: EmbeddedServer, tmp_path: Path
) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(own_server.uri)
    work = client.limits.work
    docs = [
        {
            "status": "pending",
            "n": i,
            "type": "invoice" if i % 2 else "email",
            "tenant": f"t{i % TENANTS}",
        }
        for i in range(TENANTS * PER_TENANT)
    ]
    work.insert_many(docs)
    settings = {
        "MONGODB_URI": own_server.uri + "?serverSelectionTimeoutMS=1000",
        "MONGODB_DATABASE": "limits",
        "HANDLER": "tests.system.handlers:spans",
        "HANDLER_SLEEP": "0.05",
        "TYPE_FLEET_CONCURRENCY": f"invoice={INVOICES}",
        "CONCURRENCY_KEY": "tenant",
        "KEY_CONCURRENCY": "1",
        "BATCH_SIZE": "5",
        "CONCURRENCY": "4",
        "LEASE_SECONDS": str(LEASE),
        "STORE_OUTAGE_SECONDS": "1",
    }
    record = tmp_path / "executions.txt"
    agents = [spawn(f"agent-{i}", **settings) for i in range(4)]
    killed: dict[int, float] = {}

    def started() -> int:
        return record.read_text().count("s ") if record.exists() else 0

    for kill in range(KILLS):
        wait_until(_more(started, started() + 15), timeout=60, what="progress")
        victim = agents.pop(0)
        victim.signal(signal.SIGKILL)
        killed[victim.pid] = time.monotonic()
        assert victim.wait() == -signal.SIGKILL
        agents.append(spawn(f"respawn-{kill}", **settings))
        if kill == 1:  # MongoDB restarts under the fleet
            client.close()
            own_server.stop()
            own_server.start()
            client = MongoClient(own_server.uri)
            work = client.limits.work
    total = TENANTS * PER_TENANT
    wait_until(lambda: statuses(work) == {"processed": total}, timeout=180, what="all processed")
    runs = spans(record, killed)
    assert {n for n, *_ in runs} == set(range(total))
    by_tenant: dict[str, list[tuple[float, float]]] = defaultdict(list)
    invoices = []
    for n, _, start, end in runs:
        by_tenant[str(docs[n]["tenant"])].append((start, end))
        if docs[n]["type"] == "invoice":
            invoices.append((start, end))
    per_tenant = {tenant: most_at_once(r) for tenant, r in by_tenant.items()}
    assert set(per_tenant.values()) == {1}, f"KEY_CONCURRENCY=1 broken: {per_tenant}"
    assert most_at_once(invoices) == INVOICES, "the fleet ran more (or never as many) invoices"
    assert not work.count_documents(
        {"$or": [{"limit_slot": {"$exists": True}}, {"key_slot": {"$exists": True}}]}
    )
    again = Counter(n for n, *_ in runs)
    print(
        f"limit storm: {KILLS} kills and a server restart, {len(runs)} runs of {total} documents "
        f"({sum(c - 1 for c in again.values())} again after a kill), most at once: "
        f"{most_at_once(invoices)} invoices, {max(per_tenant.values())} per tenant"
    )
    for agent in agents:
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    client.close()


def _more(count: Any, target: int) -> Any:
    return lambda: count() >= target
