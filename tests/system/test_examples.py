"""The examples run as a user would run them: examples/producer.py (a real process, twice)
feeds an agent process that runs the Worker registry of examples/worker.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.system.conftest import ROOT
from tests.system.conftest import run_cli as cli

pytestmark = pytest.mark.system


def produce(env: dict[str, str], module: str = "examples.producer", *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_producer_feeds_a_worker_registry(
    spawn: Any, agent_env: dict[str, str], work: Any
) -> None:
    work.insert_one({"status": "pending", "type": "sms", "to": "+1555"})  # nobody runs sms
    first = produce(agent_env)
    assert "welcome email:" in first and "new" in first
    agent = spawn("worker", HANDLER="", HANDLERS="examples.worker:worker")

    def by_key(key: str) -> str:
        return str(work.find_one({"enqueue_key": key})["status"])

    def outcomes() -> dict[str, str]:
        return {
            "welcome": by_key("welcome-ada"),
            "bob": work.find_one({"to": "bob@example.com"})["status"],
            "carol": work.find_one({"to": "carol@example.com"})["status"],
            "nobody": work.find_one({"to": "nobody"})["status"],
            "inv-1001": by_key("inv-1001"),
            "inv-1002": by_key("inv-1002"),  # due two seconds after it was enqueued
        }

    expected = {
        "welcome": "processed",
        "bob": "processed",
        "carol": "cancelled",  # Skip: unsubscribed
        "nobody": "failed",  # Fail: not an address, no retries
        "inv-1001": "processed",
        "inv-1002": "processed",
    }
    wait_until(lambda: outcomes() == expected, timeout=60, what="every example document")
    assert work.find_one({"to": "nobody"})["attempts"] == 1, "Fail: no second attempt"

    again = produce(agent_env)
    assert "already enqueued" in again
    for key in ("welcome-ada", "inv-1001", "inv-1002"):
        assert len(work.find({"enqueue_key": key}).to_list()) == 1, f"{key} enqueued twice"
    assert work.find_one({"type": "sms"})["status"] == "pending", "sms is not this agent's"
    registry = work.database["agent_registry"].find_one({"_id": "worker"})
    assert registry["types"] == ["email", "invoice"], "the registry's types are published"
    report = cli(agent_env, "doctor", "--json")
    assert json.loads(report.stdout)["unserved_types"] == {"sms": 1}
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0


def test_the_workflow_example_runs_in_order_and_reports_once(
    spawn: Any, agent_env: dict[str, str], work: Any
) -> None:
    out = produce(agent_env, "examples.workflow")
    assert "order 1001: pack" in out and "of 8 thumbnails" in out
    agent = spawn("workflow", HANDLER="", HANDLERS="examples.workflow:worker")
    report = {"type": "report"}
    wait_until(
        lambda: work.find_one(report)["status"] == "processed", timeout=60, what="the report"
    )
    [done] = [e for e in agent.events() if e.get("event") == "thumbnails done"]
    assert (done["processed"], done["failed"]) == (7, 1), "ctx.batch held the batch's summary"
    assert work.find_one(report)["batch"]["processed"] == 7
    [closed] = [e for e in agent.events() if e.get("action") == "queue.batch_closed"]
    assert (closed["event"], closed["size"], closed["failed"]) == (
        "batch ended: its then job is pending",
        8,
        1,
    ), "the agent that closed the batch says so"
    wait_until(
        lambda: work.find_one({"type": "invoice"})["status"] == "processed", what="the invoice"
    )
    assert work.find_one({"type": "ship"})["after"] == [work.find_one({"type": "pack"})["_id"]]
    produce(agent_env, "examples.workflow")  # again: the keyed order is there already
    assert len(work.find({"type": "invoice"}).to_list()) == 1
    assert len(work.find({"type": "report"}).to_list()) == 2, "a second batch, its own report"
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0


def test_the_outbox_example_writes_the_order_and_its_job_or_neither(
    agent_env: dict[str, str], work: Any
) -> None:
    assert "order order-1 placed" in produce(agent_env, "examples.outbox", "order-1")
    declined = produce(agent_env, "examples.outbox", "order-2", "--fail")
    assert "order order-2 not placed: payment declined" in declined
    orders = work.database["orders"]
    assert [o["_id"] for o in orders.find({})] == ["order-1"]
    jobs = list(work.find({}, {"_id": 0, "order": 1, "type": 1, "status": 1}))
    assert jobs == [{"order": "order-1", "type": "ship", "status": "pending"}]


def test_the_tracing_example_shows_one_trace_across_two_processes(
    spawn: Any, agent_env: dict[str, str], work: Any, tmp_path: Any
) -> None:
    """A producer process's span is the parent of both attempts in the agent process, the
    failed one and its retry; the handler's own span is a child of the second."""
    agent_file, producer_file = tmp_path / "agent.jsonl", tmp_path / "producer.jsonl"
    spawn(
        "traced",
        HANDLER="examples.tracing:send_email",
        TRACE_FILE=str(agent_file),
        RETRY_BASE_SECONDS="0",
        RETRY_MAX_SECONDS="0",
    )
    env = {**agent_env, "TRACE_FILE": str(producer_file)}
    produce(env, "examples.tracing", "send", "ada@example.com")
    wait_until(lambda: work.find_one({"to": "ada@example.com", "status": "processed"}), 30)

    def spans() -> list[dict[str, Any]]:
        lines = [*agent_file.read_text().splitlines(), *producer_file.read_text().splitlines()]
        return [json.loads(line) for line in lines if line.strip()]

    wait_until(lambda: sum(s["name"] == "smtp send" for s in spans()) == 2, 30)
    (request,) = [s for s in spans() if s["name"] == "POST /signup"]
    (send,) = [s for s in spans() if s["name"] == "send work"]
    assert send["parent_id"] == request["context"]["span_id"]
    attempts = sorted(
        (s for s in spans() if s["name"] == "process email"),
        key=lambda s: s["attributes"]["pulling_agent.attempt"],
    )
    assert [a["attributes"]["pulling_agent.outcome"] for a in attempts] == ["retry", "processed"]
    trace_id = request["context"]["trace_id"]
    for attempt in attempts:
        assert attempt["context"]["trace_id"] == trace_id
        assert attempt["parent_id"] == send["context"]["span_id"]
        assert attempt["resource"]["attributes"]["service.name"] == "pulling-agent"
    assert attempts[0]["status"]["status_code"] == "ERROR"
    sends = [s for s in spans() if s["name"] == "smtp send"]
    assert {s["parent_id"] for s in sends} == {a["context"]["span_id"] for a in attempts}
    shown = produce(agent_env, "examples.tracing", "show", str(producer_file), str(agent_file))
    assert "POST /signup  [signup-api]" in shown and "ERROR: smtp timed out" in shown
