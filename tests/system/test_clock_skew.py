"""One clock for the fleet, with real processes on badly set clocks (Debian's libfaketime).

Each run is one fleet of four agents: N1 and N2 on the machine's clock, A with its clock
``skew`` ahead and B ``skew`` behind, all on the same MongoDB (whose clock is the true one).
Every guarantee of docs/QUEUE.md "One clock" is checked in both directions at once:

* every agent's idea of "now" is MongoDB's (``/api/cluster/stats`` ``now``), whatever its own;
* no live lease is taken and no document runs twice (handlers longer than ``LEASE_SECONDS``);
* every agent sees the same live set (so the same shares), and nobody's entry expires;
* a fleet command served by a skewed agent is complete only when all four acknowledged it;
* ``doctor`` names both skewed agents and says the fix;
* a scheduled job fires once within a second of its time on MongoDB's clock;
* ``FLEET_RATE_LIMIT`` holds across the skewed agents;
* producers on skewed clocks enqueue ``delay`` work due on MongoDB's clock, and no agent
  claims it early or more than a second late;
* a SIGKILLed agent drops out of every view within three heartbeats.

Times are observed independently of the skewed processes: handlers and jobs write
``/proc/uptime`` (one clock for the whole machine, 10 ms steps, which libfaketime does not
fake), which this process maps onto MongoDB's clock. (libfaketime's DONT_FAKE_MONOTONIC=1
would break ``time.sleep``: EINVAL or no sleep at all, from clock_nanosleep's absolute
deadline converted as if it were faked.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pulling_agent.client.clock import measured
from tests.conftest import wait_until
from tests.system.conftest import ROOT, AgentProcess

pytestmark = pytest.mark.system

TOKEN = "ops-token-0123456789abcdef"
HEARTBEAT = 1.0
LEASE = 6.0
RATE = 5.0
DEAD_AFTER = 3 * HEARTBEAT + 3.0  # documented: three heartbeats; plus a beat and a read
PRODUCER = """
import sys
from pymongo import MongoClient
from pulling_agent.client import enqueue
work = MongoClient(sys.argv[1], tz_aware=True)[sys.argv[2]]["work"]
print(enqueue(work, {"n": int(sys.argv[3])}, delay=float(sys.argv[4])).id)
"""


def faketime(seconds: float) -> dict[str, str]:
    """The environment that puts a process ``seconds`` off the true clock: libfaketime
    preloaded into the process itself (the ``faketime`` wrapper forks, so a signal sent to
    the PID it started would not reach the agent)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        message = "libfaketime is missing: make faketime (apt-get install faketime)"
        if os.environ.get("CI") and "faketime" not in os.environ.get("PULLING_AGENT_MAY_SKIP", ""):
            pytest.fail(message + " (CI must install it: make test does)")
        pytest.skip(message)
    return {"LD_PRELOAD": str(found[0]), "FAKETIME": f"{seconds:+g}s"}


def api(agent: AgentProcess, method: str, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{agent.api_port()}{path}",
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def live_view(agent: AgentProcess) -> list[str]:
    return sorted(a["agent_id"] for a in api(agent, "GET", "/api/cluster/stats")["agents"])


def lines(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


class Server:
    """MongoDB's clock as this (true-clock) process estimates it, and the machine's uptime
    mapped onto it."""

    def __init__(self, work: Any) -> None:
        self.clock = measured(work)

    def now(self) -> datetime:
        return self.clock.now()

    def at(self, uptime: float) -> datetime:
        """When the machine's uptime read ``uptime``, on MongoDB's clock (10 ms steps)."""
        ago = time.clock_gettime(time.CLOCK_BOOTTIME) - uptime
        return self.now() - timedelta(seconds=ago)


@pytest.mark.parametrize("skew", [2, 30, 300, 600], ids=lambda s: f"{s}s")
def test_a_fleet_with_skewed_clocks_runs_on_mongodbs(
    spawn: Any, work: Any, tmp_path: Path, agent_env: dict[str, str], skew: int
) -> None:
    server = Server(work)
    runs = tmp_path / "executions.txt"
    job_log = tmp_path / "jobs.log"
    fire_at = server.now() + timedelta(seconds=16)
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(
        "jobs:\n"
        f'  - {{id: once, trigger: date, run_date: "{fire_at.isoformat()}", '
        'func: "tests.system.jobs:clocked"}\n'
    )
    env = {
        "HANDLER": "tests.system.handlers:clocked",
        "RECORD_FILE": str(runs),
        "HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "LEASE_SECONDS": str(LEASE),
        "CONCURRENCY": "2",
        "BATCH_SIZE": "2",
        "FLEET_RATE_LIMIT": str(RATE),
        "API_TOKENS": f"ops:{TOKEN}",
        "JOB_LOG": str(job_log),
    }
    scheduling = {"JOBS_FILE": str(jobs_file)}
    agents = {
        "N1": spawn("N1", **env),
        "N2": spawn("N2", **env),
        "A": spawn("A", **env, **scheduling, **faketime(skew)),
        "B": spawn("B", **env, **scheduling, **faketime(-skew)),
    }
    everyone = sorted(agents)
    wait_until(lambda: all(a.api_port() for a in agents.values()), what="APIs listening")
    wait_until(lambda: live_view(agents["N1"]) == everyone, what="all four live")

    # every agent's now is MongoDB's, within the round trips around the question
    for name, agent in agents.items():
        before = server.now()
        said = datetime.fromisoformat(api(agent, "GET", "/api/cluster/stats")["now"])
        after = server.now()
        assert before - timedelta(seconds=0.05) <= said <= after + timedelta(seconds=0.05), name

    # the registry shows each node's offset; doctor (itself skewed) names the two, with the fix
    entries = {d["_id"]: d for d in work.database["agent_registry"].find()}
    assert entries["A"]["clock_offset_seconds"] == pytest.approx(-skew, abs=0.5)
    assert entries["B"]["clock_offset_seconds"] == pytest.approx(skew, abs=0.5)
    assert abs(entries["N1"]["clock_offset_seconds"]) < 0.5
    doctor = subprocess.run(
        [sys.executable, "-m", "pulling_agent", "doctor"],
        env={**agent_env, **env, **faketime(-skew)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert f"agent 'A': its node's clock is {skew:.1f} s ahead of MongoDB's" in doctor.stdout
    assert f"agent 'B': its node's clock is {skew:.1f} s behind MongoDB's" in doctor.stdout
    assert "run NTP" in doctor.stdout
    assert "'N1'" not in doctor.stdout

    # handlers longer than the lease: nobody takes a live lease, nothing runs twice
    work.insert_many([{"status": "pending", "n": n, "sleep": LEASE + 1.5} for n in range(8)])
    wait_until(lambda: len(lines(runs)) >= 8, what="8 long handlers started")
    # meanwhile: one live set in every view, so one set of shares; no entry expired
    for name, agent in agents.items():
        assert live_view(agent) == everyone, name
    wait_until(
        lambda: work.count_documents({"status": "processed"}) == 8, timeout=60, what="8 done"
    )
    started = [int(n) for n, _, _ in lines(runs)]
    assert sorted(started) == list(range(8)), "a document ran twice: a live lease was taken"
    for agent in agents.values():
        assert not [e for e in agent.events() if e.get("action") == "queue.lease_lost"], agent.name
    assert sorted(d["_id"] for d in work.database["agent_registry"].find()) == everyone

    # a fleet command served by either skewed agent waits for all four
    for command, via in (("pause", "A"), ("resume", "B")):
        result = api(agents[via], "POST", f"/api/cluster/{command}?wait=10&reason=skew")
        assert result["acks"]["complete"] is True, (command, result)
        assert result["acks"]["acknowledged"] == everyone, (command, result)

    # the scheduled job: once, within a second of its time on MongoDB's clock
    wait_until(lambda: bool(lines(job_log)), timeout=40, what="the scheduled job fired")
    wait_until(lambda: work.database["agent_job_runs"].count_documents({}) >= 1, what="run")
    [(job, fire, _, mono)] = lines(job_log)
    assert job == "once"
    assert abs((datetime.fromisoformat(fire) - fire_at).total_seconds()) < 0.001
    late = (server.at(float(mono)) - fire_at).total_seconds()
    assert -0.02 <= late <= 1.0, f"fired {late:+.3f} s from its time"

    # FLEET_RATE_LIMIT across every agent, two of them skewed
    runs.write_text("")
    work.insert_many([{"status": "pending", "n": 100 + n} for n in range(20)])
    wait_until(lambda: len(lines(runs)) >= 20, timeout=60, what="20 rate-limited handlers")
    starts = sorted(float(m) for _, _, m in lines(runs))
    assert starts[-1] - starts[0] >= (20 - 1) / RATE - 0.25, "the fleet ran faster than its limit"

    # producers on either skewed clock: delay=3 is due 3 s later on MongoDB's clock
    runs.write_text("")
    due: dict[int, datetime] = {}
    for n, producer_skew in ((200, skew), (201, -skew)):
        before = server.now()
        made = subprocess.run(
            [
                sys.executable,
                "-c",
                PRODUCER,
                agent_env["MONGODB_URI"],
                agent_env["MONGODB_DATABASE"],
                str(n),
                "3",
            ],
            env={**agent_env, **faketime(producer_skew)},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        after = server.now()
        assert made.returncode == 0, made.stderr
        doc = work.find_one({"n": n})
        assert doc is not None
        due[n] = doc["available_at"]
        assert before + timedelta(seconds=2.99) <= due[n] <= after + timedelta(seconds=3.01)
    wait_until(lambda: len(lines(runs)) >= 2, timeout=30, what="the delayed documents ran")
    for number, _, mono in lines(runs):
        lateness = (server.at(float(mono)) - due[int(number)]).total_seconds()
        # within a second either way; on MongoDB never early at all (the claim filter is
        # exact: tests/integration/test_store_contract.py), nx-27017 compares to the second
        assert -1.0 <= lateness <= 1.0, f"document {number} claimed {lateness:+.3f} s from its time"

    # a SIGKILLed agent drops out of every view within three heartbeats
    for victim, watchers in (("N2", ("N1", "A", "B")), ("A", ("N1", "B"))):
        agents[victim].signal(signal.SIGKILL)
        agents[victim].wait()
        killed = time.monotonic()
        for name in watchers:

            def gone(victim: str = victim, name: str = name) -> bool:
                return victim not in live_view(agents[name])

            wait_until(
                gone,
                timeout=max(0.0, DEAD_AFTER - (time.monotonic() - killed)),
                interval=0.1,
                what=f"{victim} gone from {name}'s view",
            )


def test_the_queue_wait_in_a_trace_is_on_mongodbs_clock(
    spawn: Any, agent_env: dict[str, str], work: Any, tmp_path: Path
) -> None:
    """A producer 5 minutes behind, an agent 5 minutes ahead: the attempt's span says the
    document waited about as long as it did, not 10 minutes (enqueued_at and the claim are
    both MongoDB's time)."""
    skew = 300.0
    spans_file = tmp_path / "agent.jsonl"
    spawn(
        "traced",
        HANDLER="examples.tracing:send_email",
        TRACE_FILE=str(spans_file),
        RETRY_BASE_SECONDS="0",
        RETRY_MAX_SECONDS="0",
        **faketime(skew),
    )
    sent = subprocess.run(
        [sys.executable, "-m", "examples.tracing", "send", "skew@example.com"],
        env={**agent_env, "TRACE_FILE": str(tmp_path / "producer.jsonl"), **faketime(-skew)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: work.find_one({"to": "skew@example.com", "status": "processed"}), 30)

    def attempts() -> list[dict[str, Any]]:
        spans = [json.loads(line) for line in spans_file.read_text().splitlines() if line]
        return [s for s in spans if s["name"] == "process email"]

    wait_until(lambda: len(attempts()) == 2, 30)
    for attempt in attempts():
        assert 0 <= attempt["attributes"]["pulling_agent.queue.wait_seconds"] < 30, attempt
