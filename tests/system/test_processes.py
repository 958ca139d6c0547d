"""System tests: real agent processes, real signals, a real server over the wire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.system.conftest import ROOT, AgentProcess, executions, run_cli, statuses

pytestmark = pytest.mark.system


def docs(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"status": "pending", "n": i, **fields} for i in range(n)]


def test_three_agents_one_killed_every_document_processed_none_left_processing(
    spawn: Any, work: Any, tmp_path: Path
) -> None:
    total = 240
    work.insert_many(docs(total))
    settings = {
        "BATCH_SIZE": "10",
        "CONCURRENCY": "4",
        "LEASE_SECONDS": "2",
        "HANDLER_SLEEP": "0.01",
    }
    agents = [spawn(f"agent-{i}", **settings) for i in range(3)]
    wait_until(lambda: statuses(work).get("processed", 0) >= 40, what="40 processed")
    victim = agents[0]
    victim.signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    wait_until(
        lambda: statuses(work) == {"processed": total}, timeout=90, what="every document processed"
    )
    assert work.count_documents({"lease": {"$exists": True}}) == 0
    runs = executions(tmp_path / "executions.txt")
    counts = Counter(n for n, _ in runs)
    assert set(counts) == set(range(total))
    twice = {n for n, c in counts.items() if c > 1}
    victims = {n for n, pid in runs if pid == victim.pid}
    assert twice <= victims, "only documents the killed agent held may run again"
    for agent in agents[1:]:
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0


def test_sigterm_mid_backlog_exits_0_and_releases_leases(
    spawn: Any, work: Any, tmp_path: Path
) -> None:
    total = 200
    work.insert_many(docs(total))
    agent = spawn("agent", BATCH_SIZE="20", CONCURRENCY="2", HANDLER_SLEEP="0.05")
    wait_until(lambda: statuses(work).get("processed", 0) >= 10, what="10 processed")
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0
    counts = statuses(work)
    assert "processing" not in counts
    assert counts["processed"] + counts["pending"] == total
    assert work.count_documents({"lease": {"$exists": True}}) == 0
    pending_attempts = {d.get("attempts", 0) for d in work.find({"status": "pending"})}
    assert pending_attempts <= {0}, "released documents must not count as attempted"
    assert "Leases released" in agent.log()
    assert not (agent.health_dir / "liveness").exists()


def _health(agent: AgentProcess, *flags: str) -> int:
    result = subprocess.run(
        [sys.executable, "-m", "pulling_agent", "health", "--dir", str(agent.health_dir), *flags],
        capture_output=True,
        timeout=30,
    )
    return result.returncode


def test_signals_and_kubelet_style_control_file_swap_change_health_files(spawn: Any) -> None:
    agent = spawn("agent")
    ready = agent.health_dir / "readiness"
    wait_until(ready.exists, what="readiness")
    assert _health(agent, "--ready") == 0
    first_beat = agent.liveness()[1]
    wait_until(lambda: agent.liveness()[1:2] not in ([], [first_beat]), what="next heartbeat")

    agent.signal(signal.SIGUSR1)
    wait_until(lambda: agent.liveness()[:1] == ["paused"], what="paused by SIGUSR1")
    wait_until(lambda: not ready.exists(), what="readiness removed after liveness said paused")
    assert _health(agent) == 0, "a paused agent is alive"
    assert _health(agent, "--ready") == 1
    agent.signal(signal.SIGUSR2)
    wait_until(lambda: agent.liveness()[:1] == ["running"], what="running after SIGUSR2")
    wait_until(ready.exists, what="readiness after SIGUSR2")

    control = agent.control_dir
    control.mkdir(parents=True)

    def publish(value: str, version: int) -> None:
        data = control / f"..2026_01_01_00_00_{version:02d}.000"
        data.mkdir()
        (data / "state").write_text(value)
        (control / "..data_tmp").symlink_to(data.name)
        os.replace(control / "..data_tmp", control / "..data")
        if not (control / "state").is_symlink():
            (control / "state").symlink_to("..data/state")

    publish("pause", 1)
    wait_until(lambda: agent.liveness()[:1] == ["paused"], what="paused by control file")
    assert any(
        line == "paused_by=control_file(control file says pause)" for line in agent.liveness()
    )
    publish("resume", 2)
    wait_until(lambda: agent.liveness()[:1] == ["running"], what="running after file resume")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    log = agent.log()
    assert "Pausing agent" in log
    assert "Resuming agent" in log
    assert "Control file command detected: pause" in log


def test_poison_document_ends_in_dead_letter_and_is_requeued(
    spawn: Any, work: Any, agent_env: dict[str, str]
) -> None:
    work.insert_many(docs(5))
    poison_id = work.insert_one({"status": "pending", "n": 99, "poison": True}).inserted_id
    agent = spawn("agent", MAX_ATTEMPTS="2", RETRY_BASE_SECONDS="0", RETRY_MAX_SECONDS="0")
    wait_until(lambda: statuses(work) == {"processed": 5, "failed": 1}, what="poison failed")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    failed = work.find_one({"_id": poison_id})
    assert failed["error"]["type"] == "PoisonError"
    assert "document 99 is poison" in failed["error"]["traceback"]

    listed = run_cli(agent_env, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["_id"] == str(poison_id), "the id as dlq requeue takes it (as the API shows it)"

    requeued = run_cli(agent_env, "dlq", "requeue", str(poison_id))
    assert requeued.returncode == 0, requeued.stderr
    assert json.loads(requeued.stdout) == {"requeued": 1, "not_failed": []}
    doc = work.find_one({"_id": poison_id})
    assert doc["status"] == "pending"
    assert doc["attempts"] == 0


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"BATCH_SIZE": "abc"}, "BATCH_SIZE"),
        ({"POLL_INTERVAL": "0"}, "POLL_INTERVAL"),
        ({"HANDLER": ""}, "HANDLER"),
        ({"HANDLER": "no.such.module:f"}, "HANDLER"),
        ({"MONGODB_URI": "http://admin:T0pS3cret@db:27017"}, "MONGODB_URI"),
        ({"MONGODB_DATABASE": ""}, "MONGODB_DATABASE"),
        ({"MONGODB_COLLECTION": "agent_control"}, "CONTROL_COLLECTION"),
        ({"MONGODB_COLLECTION": "orders", "JOBS_COLLECTION": "orders"}, "JOBS_COLLECTION"),
    ],
)
def test_bad_environment_exits_2_with_one_line_naming_the_variable(
    agent_env: dict[str, str], overrides: dict[str, str], variable: str
) -> None:
    result = run_cli({**agent_env, **overrides}, "run")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "T0pS3cret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("overrides", "args", "says"),
    [
        ({"MONGODB_URI": "mongodb://ops:S3cr@t@127.0.0.1:1/"}, [], "MONGODB_URI"),
        ({"MONGODB_URI": "mongodb://127.0.0.1:port/"}, [], "MONGODB_URI"),
        ({"MONGODB_URI": "mongodb://127.0.0.1:1/?replicaSet"}, [], "MONGODB_URI"),
        ({"MONGODB_DATABASE": "my/db"}, [], "MONGODB_DATABASE"),
        ({"MONGODB_COLLECTION": "bad.name$"}, [], "MONGODB_COLLECTION"),
        ({"HEALTH_DIR": "{file}/health"}, [], "HEALTH_DIR"),
        ({}, ["--embedded", "{file}"], "that is a file"),
        ({"HANDLER": "broken_handler:handle"}, [], "broken_handler.py:2"),
    ],
    ids=[
        "at-in-password",
        "port",
        "replicaset",
        "database",
        "collection",
        "health-dir",
        "embedded-file",
        "syntax-error",
    ],
)
def test_what_was_a_traceback_is_one_line_and_exit_2(
    agent_env: dict[str, str],
    tmp_path: Path,
    overrides: dict[str, str],
    args: list[str],
    says: str,
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    (tmp_path / "broken_handler.py").write_text("def handle(doc):\n    return (\n")
    env = {**agent_env, "PYTHONPATH": f"{tmp_path}:{agent_env['PYTHONPATH']}"}
    env.update({k: v.replace("{file}", str(a_file)) for k, v in overrides.items()})
    result = run_cli(env, "run", *[a.replace("{file}", str(a_file)) for a in args])
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert says in lines[0] and "Traceback" not in result.stderr
    assert "S3cr" not in result.stderr + result.stdout


def test_password_in_uri_never_reaches_the_logs(spawn: Any, tmp_path: Path) -> None:
    closed = 1  # nothing listens on port 1: every attempt fails and is logged
    uri = f"mongodb://admin:Sup3rS3cretPw@127.0.0.1:{closed}/?serverSelectionTimeoutMS=200"
    agent = spawn("agent", MONGODB_URI=uri)
    wait_until(lambda: "MongoDB unreachable" in agent.log(), what="connection errors logged")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    log = agent.log()
    assert "Sup3rS3cretPw" not in log
    assert "admin:***@127.0.0.1" in log


def test_module_entry_point_and_console_script_agree() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pulling_agent", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0
    for command in ("run", "demo", "health", "dlq"):
        assert command in result.stdout


def test_hung_sync_handler_does_not_block_shutdown_and_its_lease_is_released(
    spawn: Any, work: Any
) -> None:
    work.insert_many(docs(1))
    agent = spawn("agent", HANDLER="tests.system.handlers:hang", SHUTDOWN_TIMEOUT="0.5")
    wait_until(lambda: statuses(work) == {"processing": 1}, what="handler started")
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    [doc] = work.find()
    assert doc["status"] == "pending"
    assert doc["attempts"] == 1, "an abandoned attempt still counts"
    assert "lease" not in doc


def test_agent_rides_out_a_mongodb_outage(spawn: Any, tmp_path: Path) -> None:
    from pymongo import MongoClient
    from pymongo.errors import AutoReconnect

    from pulling_agent.dev.embedded import EmbeddedServer

    server = EmbeddedServer(tmp_path / "own-server").start()
    client: MongoClient[dict[str, Any]] = MongoClient(server.uri, serverSelectionTimeoutMS=20_000)
    try:
        work = client.outage.work
        work.insert_many(docs(20))
        agent = spawn(
            "agent",
            MONGODB_URI=server.uri + "?serverSelectionTimeoutMS=500",
            MONGODB_DATABASE="outage",
            HANDLER_SLEEP="0.02",
            CONCURRENCY="1",
            BATCH_SIZE="5",
        )
        wait_until(lambda: statuses(work).get("processed", 0) >= 3, what="some processed")
        server.stop()
        wait_until(lambda: "store unavailable" in agent.log(), what="outage noticed")
        server.start()

        def insert_late() -> bool:
            try:
                work.insert_many(docs(5, late=True))
            except AutoReconnect:  # the test's own pooled connection died with the server
                return False
            return True

        wait_until(insert_late, what="server back")
        wait_until(lambda: statuses(work) == {"processed": 25}, timeout=90, what="all processed")
        assert agent.process.poll() is None, "the agent survived the outage"
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0
    finally:
        client.close()
        server.stop()
