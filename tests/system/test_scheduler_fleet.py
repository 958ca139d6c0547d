"""Scheduled jobs with three real agent processes sharing one schedule."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until

pytestmark = pytest.mark.system
TOKEN = "ops-token-0123456789abcdef"


def fires(path: Path) -> list[tuple[str, str, int]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(job, fire, int(pid)) for job, fire, pid in (line.split() for line in lines)]


def test_jobs_fire_once_across_three_agents(
    spawn: Any, tmp_path: Path, mongo_uri: str, db_name: str, agent_env: dict[str, str]
) -> None:
    from pymongo import MongoClient

    soon = datetime.now(UTC) + timedelta(seconds=3)
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(f"""
jobs:
  - {{id: tick, trigger: interval, seconds: 1, func: "tests.system.jobs:record"}}
  - {{id: once, trigger: date, run_date: "{soon.isoformat()}", func: "tests.system.jobs:record"}}
  - {{id: long, trigger: date, run_date: "{soon.isoformat()}", func: "tests.system.jobs:slow"}}
  - {{id: window, trigger: date, run_date: "{(soon + timedelta(seconds=1)).isoformat()}",
      action: pause, reason: scheduled window}}
""")
    log = tmp_path / "jobs.log"
    env = {
        "JOBS_FILE": str(jobs_file),
        "JOB_LOG": str(log),
        "JOB_LEASE_SECONDS": "2",
        "API_TOKENS": f"ops:{TOKEN}",
    }
    agents = [spawn(f"agent-{i}", **env) for i in range(3)]

    # the pause action pauses the whole fleet, and jobs keep firing while it is paused
    wait_until(lambda: all(a.liveness()[:1] == ["paused"] for a in agents), what="fleet paused")
    paused_at = datetime.now(UTC)
    wait_until(
        lambda: any(
            job == "tick" and datetime.fromisoformat(f) > paused_at + timedelta(seconds=1)
            for job, f, _ in fires(log)
        ),
        what="ticks while paused",
    )

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    try:
        runs = client[db_name]["agent_job_runs"]
        wait_until(
            lambda: runs.find_one({"job_id": "long", "outcome": "running"}) is not None,
            what="long job running",
        )
        long_run = runs.find_one({"job_id": "long"})
        assert long_run is not None
        [victim] = [a for a in agents if a.name == long_run["agent"]]
        victim.signal(signal.SIGKILL)
        victim.wait()
        wait_until(
            lambda: (runs.find_one({"_id": long_run["_id"]}) or {}).get("outcome") == "failed",
            what="the dead agent's run marked failed",
        )
        failed = runs.find_one({"_id": long_run["_id"]})
        assert failed is not None
        assert f"agent {victim.name} died" in failed["result"]["error"]

        survivors = [a for a in agents if a is not victim]
        port = survivors[0].api_port()
        listed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pulling_agent",
                "jobs",
                "list",
                "--json",
                "--url",
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**agent_env, "PULLING_AGENT_TOKEN": TOKEN},  # reads need a token too
        )
        assert listed.returncode == 0, listed.stderr
        by_id = {j["id"]: j for j in json.loads(listed.stdout)}
        assert by_id["once"]["last_outcome"] == "succeeded"
        assert by_id["once"]["next_fire_time"] is None
        assert by_id["tick"]["orphaned"] is False
        for agent in survivors:
            agent.signal(signal.SIGTERM)
            assert agent.wait() == 0
    finally:
        client.close()

    recorded = fires(log)
    per_fire = Counter((job, fire) for job, fire, _ in recorded)
    assert max(per_fire.values()) == 1, "a fire ran twice"
    assert sum(1 for job, _, _ in recorded if job == "once") == 1
    ticks = sorted(fire for job, fire, _ in recorded if job == "tick")
    assert len(ticks) >= 4
    assert len({pid for job, _, pid in recorded if job == "tick"}) >= 1
