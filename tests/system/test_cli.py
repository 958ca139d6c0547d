"""The command line as processes: ``run --embedded`` with its own server, and ``doctor``
naming the types a running routed agent leaves (the other commands are tested in process:
tests/integration/test_cli_*.py, tests/unit/test_cli_*.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.conftest import wait_until
from tests.system.conftest import ROOT, statuses
from tests.system.conftest import run_cli as cli

pytestmark = pytest.mark.system


def test_run_embedded_for_local_development(agent_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in agent_env.items() if not k.startswith("MONGODB_")}
    env.update(HEALTH_DIR=str(tmp_path / "health"), CONTROL_FILE=str(tmp_path / "state"))
    log_path = tmp_path / "agent.log"
    data = tmp_path / "devdata"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pulling_agent", "run", "--embedded", str(data)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:

        def announced() -> dict[str, Any] | None:
            for line in log_path.read_text().splitlines():
                if '"agent.embedded"' in line:
                    event: dict[str, Any] = json.loads(line)
                    return event
            return None

        wait_until(lambda: announced() is not None, what="the development-only line")
        event = announced()
        assert event is not None and event["level"] == "warning"
        assert "DEVELOPMENT ONLY" in event["event"] and event["data"] == str(data)
        client: MongoClient[dict[str, Any]] = MongoClient(event["uri"])
        work = client.pulling_agent_dev.work
        work.insert_many([{"status": "pending", "n": i} for i in range(3)])
        wait_until(lambda: statuses(work) == {"processed": 3}, what="processed")
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert (data / "data").is_dir(), "the data stays in the given directory"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(
                ("127.0.0.1", int(event["uri"].rsplit(":", 1)[1].strip("/"))), 1
            )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        # a killed agent cannot stop its server (own session): stop it by its PID
        pid_file = data / "nx.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if str(data) in Path(f"/proc/{pid}/cmdline").read_text():  # not a reused pid
                os.kill(pid, signal.SIGTERM)


def test_routing_by_type_and_doctor_names_the_types_nobody_runs(
    spawn: Any, agent_env: dict[str, str], work: Any
) -> None:
    work.insert_many(
        [{"status": "pending", "n": i, "type": kind} for i, kind in enumerate("aabbcc")]
        + [{"status": "pending", "n": 9}]
    )
    agent = spawn(
        "router",
        HANDLER="",
        HANDLERS="a=tests.system.handlers:record,b=tests.system.handlers:record",
        TYPE_CONCURRENCY="b=1",
    )
    wait_until(lambda: statuses(work) == {"processed": 4, "pending": 3}, what="a and b done")
    assert {d.get("type") for d in work.find({"status": "pending"})} == {"c", None}
    report = cli(agent_env, "doctor", "--json")
    assert report.returncode == 1
    assert json.loads(report.stdout)["unserved_types"] == {"c": 2, "(no type)": 1}
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
