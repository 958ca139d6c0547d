"""Real agent processes (``python -m pulling_agent run``) against the session's server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


class AgentProcess:
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.health_dir = workdir / name / "health"
        self.control_dir = workdir / name / "control"
        self.log_path = workdir / name / "agent.log"
        self.log_path.parent.mkdir(parents=True)
        full_env = {
            **env,
            "AGENT_ID": name,
            "HEALTH_DIR": str(self.health_dir),
            "CONTROL_FILE": str(self.control_dir / "state"),
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pulling_agent", "run"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.process.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def api_port(self) -> int | None:
        for event in self.events():
            if event.get("action") == "api.listen":
                return int(event["port"])
        return None

    def liveness(self) -> list[str]:
        try:
            return (self.health_dir / "liveness").read_text().splitlines()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def agent_env(mongo_uri: str, db_name: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "HANDLER"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "MONGODB_URI": mongo_uri,
            "MONGODB_DATABASE": db_name,
            "MONGODB_COLLECTION": "work",
            "HANDLER": "tests.system.handlers:record",
            "RECORD_FILE": str(tmp_path / "executions.txt"),
            "POLL_INTERVAL": "0.2",
            "HEARTBEAT_INTERVAL": "0.2",
            "CONTROL_FILE_INTERVAL": "0.1",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "ENABLE_CHANGE_STREAMS": "false",
            "API_PORT": "0",
            "CONTROL_POLLING_INTERVAL": "0.2",
        }
    )
    return env


@pytest.fixture
def spawn(agent_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    started: list[AgentProcess] = []

    def _spawn(name: str, **overrides: str) -> AgentProcess:
        agent = AgentProcess(name, {**agent_env, **overrides}, tmp_path)
        started.append(agent)
        return agent

    yield _spawn
    for agent in started:
        agent.stop()


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m pulling_agent ARGS`` to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pulling_agent", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def statuses(collection: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in collection.find({}, {"status": 1}):
        counts[doc["status"]] = counts.get(doc["status"], 0) + 1
    return counts


def executions(path: Path) -> list[tuple[int, int]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in lines if line.strip())]
