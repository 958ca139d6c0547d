"""Bad documents and misbehaving handlers against real agent processes: every good
document is processed, every bad one ends in the dead letter with a clear error, and the
agents stay up, ready and stoppable."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.system.conftest import executions, statuses

pytestmark = pytest.mark.system

BAD_SHAPES: list[dict[str, Any]] = [
    {"status": "pending", "attempts": "3"},
    {"status": "pending", "attempts": "abc"},
    {"status": "pending", "attempts": True},
    {"status": "pending", "attempts": 2**63 - 1},
    {"status": "pending", "attempts": 1e19},
    {"status": "pending", "available_at": "soon"},
]
RECOVERABLE: list[dict[str, Any]] = [
    {"status": "processing"},
    {"status": "processing", "lease": "x"},
    {"status": "processing", "lease": {"token": "t", "expires_at": "never"}},
    {"status": "pending", "available_at": "2020-01-01T00:00:00Z"},
]


def test_bad_documents_never_stall_two_agents(spawn: Any, work: Any, tmp_path: Path) -> None:
    good = [{"status": "pending", "n": i} for i in range(60)]
    bad = [{**shape, "n": 100 + i} for i, shape in enumerate(BAD_SHAPES)]
    recoverable = [{**shape, "n": 200 + i} for i, shape in enumerate(RECOVERABLE)]
    # the bad ones first: every claim of the fresh batch meets them
    work.insert_many([*bad, *good, *recoverable])
    agents = [
        spawn(f"agent-{i}", BATCH_SIZE="8", SWEEP_INTERVAL="0.3", POLL_INTERVAL="0.1")
        for i in range(2)
    ]

    def settled() -> bool:
        return statuses(work) == {"processed": 64, "failed": len(BAD_SHAPES)}

    wait_until(settled, timeout=60, what="good processed, bad dead-lettered")
    for doc in work.find({"status": "failed"}):
        assert doc["error"]["type"] == "MalformedDocument", doc
        assert doc["error"]["field"] in ("attempts", "available_at")
    runs = Counter(n for n, _ in executions(tmp_path / "executions.txt"))
    assert set(runs) == set(range(60)) | {200 + i for i in range(len(RECOVERABLE))}
    assert max(runs.values()) == 1, "nothing ran twice"
    for agent in agents:  # up and ready (a slow starter may still be on its way)
        readiness = agent.health_dir / "readiness"
        wait_until(readiness.exists, what=f"{agent.name} ready")
        assert agent.process.poll() is None
    malformed = [e for a in agents for e in a.events() if e.get("action") == "queue.malformed"]
    assert len(malformed) == len(BAD_SHAPES)
    assert all("fix" in e and "field" in e for e in malformed)
    for agent in agents:
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0


@pytest.mark.parametrize("timeout", ["", "5"], ids=["no-timeout", "handler-timeout"])
def test_handlers_raising_base_exceptions_fail_their_documents_only(
    spawn: Any, work: Any, timeout: str
) -> None:
    raisers = ["SystemExit", "KeyboardInterrupt", "CancelledError", "GeneratorExit"]
    work.insert_many(
        [{"status": "pending", "n": i, "raise": name} for i, name in enumerate(raisers)]
        + [{"status": "pending", "n": 10 + i} for i in range(20)]
    )
    agent = spawn(
        "agent",
        HANDLER="tests.system.handlers:misbehave",
        HANDLER_TIMEOUT=timeout,
        MAX_ATTEMPTS="1",
        CONCURRENCY="2",
    )
    wait_until(
        lambda: statuses(work) == {"processed": 20, "failed": len(raisers)},
        timeout=60,
        what="all settled",
    )
    types = {d["raise"]: d["error"]["type"] for d in work.find({"status": "failed"})}
    assert types == {name: name for name in raisers}
    assert (agent.health_dir / "readiness").exists(), "still ready: nothing wedged"
    stamp = agent.liveness()[1]
    wait_until(lambda: agent.liveness()[1:2] != [stamp], what="liveness still refreshed")
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
