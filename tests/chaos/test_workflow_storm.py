"""A kill storm through a workflow: agents SIGKILLed again and again while they run a batch
with a completion job and a chain of dependents. The completion job starts after every
member ran for the last time, the chain runs in order, and the batch's summary is exact."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from pulling_agent.client import Job, enqueue, enqueue_many
from tests.conftest import wait_until
from tests.system.conftest import executions

pytestmark = pytest.mark.system

MEMBERS = 300
CHAIN = 15
THEN = -1
KILLS = 4
SETTINGS = {
    "BATCH_SIZE": "10",
    "CONCURRENCY": "4",
    "LEASE_SECONDS": "2",
    "HANDLER_SLEEP": "0.01",
    "SWEEP_INTERVAL": "2",
}


def test_a_batch_and_a_chain_survive_a_kill_storm(spawn: Any, work: Any, tmp_path: Path) -> None:
    batch = enqueue_many(work, [{"n": i} for i in range(MEMBERS)], then=Job({"n": THEN}))
    links = [enqueue(work, {"n": 1000})]
    for k in range(1, CHAIN):
        links.append(enqueue(work, {"n": 1000 + k}, after=[links[-1].id]))
    agents = [spawn(f"agent-{i}", **SETTINGS) for i in range(3)]
    record = tmp_path / "executions.txt"
    victims: set[int] = set()
    for kill in range(KILLS):
        target = len(executions(record)) + 40
        wait_until(lambda t=target: len(executions(record)) >= t, what="progress")  # type: ignore[misc]
        victim = agents.pop(0)
        victim.signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        victims.add(victim.pid)
        agents.append(spawn(f"respawn-{kill}", **SETTINGS))
    done = {"_id": {"$in": [batch.then.id, links[-1].id]}, "status": "processed"}
    wait_until(lambda: len(work.find(done).to_list()) == 2, timeout=120, what="then and chain")

    runs = executions(record)
    position = {n: i for i, (n, _) in enumerate(runs)}  # the last run of each
    first_then = next(i for i, (n, _) in enumerate(runs) if n == THEN)
    assert all(position[n] < first_then for n in range(MEMBERS)), "then ran early"
    then_runs = [pid for n, pid in runs if n == THEN]
    assert all(pid in victims for pid in then_runs[:-1]), "then ran again without a kill"
    firsts: dict[int, int] = {}
    for i, (n, _) in enumerate(runs):
        firsts.setdefault(n, i)
    for k in range(1, CHAIN):
        assert firsts[1000 + k] > position[1000 + k - 1], f"link {k} ran before {k - 1} ended"
    summary = work.find_one({"_id": batch.then.id})["batch"]
    assert (summary["processed"], summary["failed"], summary["missing"]) == (MEMBERS, 0, 0)
    print(f"workflow storm: {KILLS} kills, then ran {len(then_runs)} time(s)")
    for agent in agents:
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
