"""Fleet control with real agent processes: the seed's curl commands (plus a token),
``pulling-agent ctl``, restarts under a standing pause or shutdown, in both watch modes."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.system.conftest import AgentProcess, statuses

pytestmark = pytest.mark.system

TOKEN = "ops-token-0123456789abcdef"
# seed 004, verbatim but for the host and the token header
SEED_PAUSE = (
    'curl -X POST "http://agent-service:8000/api/cluster/pause?reason=Maintenance&updated_by=admin"'
)
SEED_RESUME = 'curl -X POST "http://agent-service:8000/api/cluster/resume?reason=Maintenance+complete&updated_by=admin"'
SEED_STATE = "curl http://agent-service:8000/api/cluster/control-state"
SEED_SHUTDOWN = (
    'curl -X POST "http://agent-service:8000/api/cluster/shutdown?reason=Deploy&updated_by=admin"'
)

MODES = {
    "polling": {"ENABLE_CHANGE_STREAMS": "false", "CONTROL_POLLING_INTERVAL": "0.2"},
    # nx-27017 reports a standalone yet supports collection change streams: force them
    "change_streams": {"ENABLE_CHANGE_STREAMS": "always", "CONTROL_POLLING_INTERVAL": "30"},
}


def curl(seed_command: str, port: int, token: str | None = TOKEN) -> Any:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    args = shlex.split(seed_command.replace("agent-service:8000", f"127.0.0.1:{port}"))
    args[1:1] = ["-s", "--max-time", "30"]
    if token:
        args[1:1] = ["-H", f"Authorization: Bearer {token}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def state(agent: AgentProcess) -> str:
    lines = agent.liveness()
    return lines[0] if lines else ""


def start_fleet(spawn: Any, count: int, **env: str) -> list[AgentProcess]:
    agents = [spawn(f"agent-{i}", API_TOKENS=f"ops:{TOKEN}", **env) for i in range(count)]
    wait_until(lambda: all(a.api_port() is not None for a in agents), what="APIs listening")
    return agents


@pytest.mark.parametrize("mode", list(MODES))
def test_fleet_obeys_the_seed_curl_commands(spawn: Any, work: Any, mode: str) -> None:
    work.insert_many([{"status": "pending", "n": i} for i in range(400)])
    agents = start_fleet(spawn, 2, HANDLER_SLEEP="0.02", BATCH_SIZE="5", **MODES[mode])
    port = agents[0].api_port()
    assert port is not None
    wait_until(lambda: statuses(work).get("processed", 0) >= 10, what="work under way")

    unauthenticated = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            f"http://127.0.0.1:{port}/api/cluster/pause",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unauthenticated.stdout == "401"

    paused = curl(SEED_PAUSE, port)
    assert paused["control"]["command"] == "pause"
    assert paused["control"]["updated_by"] == "ops"
    wait_until(lambda: all(state(a) == "paused" for a in agents), what="every agent paused")
    frozen = statuses(work)
    assert "processing" not in frozen, "in-flight work finished before the pause took hold"
    control = curl(SEED_STATE, port)
    assert (control["command"], control["version"]) == ("pause", 1)
    assert control["watch_mode"] == mode

    curl(SEED_RESUME, port)
    wait_until(lambda: all(state(a) == "running" for a in agents), what="every agent resumed")
    wait_until(lambda: statuses(work).get("processed", 0) > frozen.get("processed", 0))

    curl(SEED_SHUTDOWN, port)
    for agent in agents:
        assert agent.wait(timeout=60) == 0
    assert "processing" not in statuses(work)

    # a new agent under the standing shutdown stays paused (no crash loop) and says why
    late = spawn("late", API_TOKENS=f"ops:{TOKEN}", **MODES[mode])
    wait_until(lambda: state(late) == "paused", what="late agent paused")
    assert any("shutdown v3 is standing" in line for line in late.liveness())
    before = statuses(work)
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "pulling_agent",
            "ctl",
            "status",
            "--json",
            "--url",
            f"http://127.0.0.1:{late.api_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PULLING_AGENT_TOKEN": TOKEN},  # reads need a token too
    )
    assert status.returncode == 0, status.stderr
    fleet = json.loads(status.stdout)
    assert [a["state"] for a in fleet["stats"]["agents"]] == ["paused"]
    assert fleet["stats"]["agents"][0]["paused_by"][0]["source"] == "cluster"
    assert statuses(work) == before, "a paused agent claims nothing"
    late.signal(signal.SIGTERM)
    assert late.wait() == 0


def test_restarted_agent_honours_a_standing_pause_before_its_first_claim(
    spawn: Any, work: Any, agent_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pulling_agent",
            "ctl",
            "pause",
            "--reason",
            "db maintenance",
            "--mongodb-uri",
            agent_env["MONGODB_URI"],
            "--json",
        ],
        env=agent_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["control"]["updated_by"].startswith("cli:")
    work.insert_many([{"status": "pending", "n": i} for i in range(5)])
    agent = spawn("agent")
    wait_until(lambda: state(agent) == "paused", what="started paused")
    [warning] = [e for e in agent.events() if e.get("action") == "api.no_auth"]
    assert warning["host"] == "127.0.0.1", "without tokens the API stays on loopback"
    assert "API_TOKENS" in warning["event"]
    wait_until(lambda: not (agent.health_dir / "readiness").exists(), what="not ready")
    assert statuses(work) == {"pending": 5}
    assert all("attempts" not in d for d in work.find())
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pulling_agent",
            "ctl",
            "resume",
            "--wait",
            "10",
            "--mongodb-uri",
            agent_env["MONGODB_URI"],
        ],
        env=agent_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "acknowledged by 1: agent" in resumed.stdout
    wait_until(lambda: statuses(work) == {"processed": 5}, what="processed after resume")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_tokens_and_passwords_stay_out_of_logs_and_responses(spawn: Any) -> None:
    agent = spawn("agent", API_TOKENS=f"ops:{TOKEN}")
    wait_until(lambda: agent.api_port() is not None, what="API listening")
    port = agent.api_port()
    assert port is not None
    bodies = [
        json.dumps(curl(f"curl http://agent-service:8000{path}", port))
        for path in ("/api/agent/state", "/api/mongo/status", "/api/cluster/stats")
    ]
    bodies.append(json.dumps(curl(SEED_PAUSE, port)))
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    everything = "\n".join(bodies) + agent.log()
    assert TOKEN not in everything
