"""Signals in the first second of a process, while Python still imports the CLI: the
agent owns them from its first instruction."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.system.conftest import statuses

pytestmark = pytest.mark.system


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for ``sig`` (SigCgt in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (sig - 1)))


def _send_as_soon_as_caught(agent: Any, sig: signal.Signals) -> None:
    deadline = time.monotonic() + 20
    while not _catches(agent.pid, sig):
        assert agent.process.poll() is None, "the process died before catching the signal"
        assert time.monotonic() < deadline, "the signal was never caught"
        time.sleep(0.001)
    agent.signal(sig)


def test_sigterm_during_start_up_exits_0_without_claiming(spawn: Any, work: Any) -> None:
    work.insert_many([{"status": "pending", "n": i} for i in range(5)])
    agent = spawn("agent")
    _send_as_soon_as_caught(agent, signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    actions = [e.get("action") for e in agent.events()]
    assert "agent.early_signal" in actions, "the signal arrived while starting"
    assert statuses(work) == {"pending": 5}


def test_sigusr1_during_start_up_makes_the_agent_start_paused(spawn: Any, work: Any) -> None:
    work.insert_many([{"status": "pending", "n": i} for i in range(5)])
    agent = spawn("agent")
    _send_as_soon_as_caught(agent, signal.SIGUSR1)
    wait_until(lambda: agent.liveness()[:1] == ["paused"], what="started paused")
    assert "agent.early_signal" in [e.get("action") for e in agent.events()]
    assert statuses(work) == {"pending": 5}, "nothing claimed"
    agent.signal(signal.SIGUSR2)
    wait_until(lambda: statuses(work) == {"processed": 5}, what="resumed")
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
