"""A kill storm: agents SIGKILLed again and again while they work, each replaced at once.
Every document is processed; only documents a killed agent held may run twice."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.system.conftest import executions, statuses

pytestmark = pytest.mark.system

TOTAL = 600
KILLS = 6
BATCH_SIZE, CONCURRENCY = 10, 4
# an agent holds at most about 1.5 batches plus what its handlers run: the most a kill
# can make run twice
HELD_MAX = BATCH_SIZE * 3 // 2 + CONCURRENCY


def test_kill_storm(spawn: Any, work: Any, tmp_path: Path) -> None:
    work.insert_many([{"status": "pending", "n": i} for i in range(TOTAL)])
    settings = {
        "BATCH_SIZE": str(BATCH_SIZE),
        "CONCURRENCY": str(CONCURRENCY),
        "LEASE_SECONDS": "2",
        "HANDLER_SLEEP": "0.01",
    }
    agents = [spawn(f"agent-{i}", **settings) for i in range(3)]
    record = tmp_path / "executions.txt"
    victims: set[int] = set()
    for kill in range(KILLS):
        wait_until(_progress(record, len(executions(record)) + 20), what="progress")
        victim = agents.pop(0)
        victim.signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        victims.add(victim.pid)
        agents.append(spawn(f"respawn-{kill}", **settings))
    wait_until(lambda: statuses(work) == {"processed": TOTAL}, timeout=120, what="all processed")
    runs = executions(record)
    counts = Counter(n for n, _ in runs)
    assert set(counts) == set(range(TOTAL))
    twice = {n for n, c in counts.items() if c > 1}
    by_victims = {n for n, pid in runs if pid in victims}
    assert twice <= by_victims, "only documents a killed agent held may run again"
    duplicates = len(runs) - TOTAL
    assert duplicates <= KILLS * HELD_MAX
    print(f"kill storm: {KILLS} kills, {duplicates} duplicate runs (bound {KILLS * HELD_MAX})")
    for agent in agents:
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0


def _progress(record: Path, target: int) -> Any:
    return lambda: len(executions(record)) >= target
