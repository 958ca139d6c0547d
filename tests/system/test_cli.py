"""The command line against a real server: ``doctor``, and giving up quickly when MongoDB
cannot be reached."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.conftest import wait_until
from tests.system.conftest import ROOT, statuses
from tests.system.conftest import run_cli as cli
from tests.unit.test_documents import EVERY_BAD_SHAPE, FINE

pytestmark = pytest.mark.system


def test_doctor_explains_every_bad_shape(agent_env: dict[str, str], work: Any) -> None:
    work.insert_many([*EVERY_BAD_SHAPE, *FINE])
    result = cli(agent_env, "doctor", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["found"] == len(EVERY_BAD_SHAPE)
    assert sorted(d["_id"] for d in report["documents"]) == sorted(
        d["_id"] for d in EVERY_BAD_SHAPE
    )
    table = cli({**agent_env, "COLUMNS": "250"}, "doctor")
    assert table.returncode == 1
    assert "attempts-string" in table.stdout and "set status to 'pending'" in table.stdout


def test_doctor_is_quiet_on_a_healthy_collection(agent_env: dict[str, str], work: Any) -> None:
    work.insert_many(FINE)
    result = cli(agent_env, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No stuck documents" in result.stdout


@pytest.mark.parametrize(
    "args", [["doctor"], ["dlq", "list"], ["ctl", "status", "--mongodb-uri", "URI"]]
)
def test_commands_give_up_on_an_unreachable_server_with_one_line(
    agent_env: dict[str, str], args: list[str]
) -> None:
    uri = "mongodb://user:s3cret-pass@127.0.0.1:1/?serverSelectionTimeoutMS=60000"
    env = {**agent_env, "MONGODB_URI": uri}
    result = cli(env, *[uri if a == "URI" else a for a in args])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ServerSelectionTimeoutError" in lines[0]
    assert "s3cret-pass" not in result.stderr + result.stdout


HOSTILE = "\x1b]0;pwned\x07\x1b[2J[bold]x[/bold]\nready=yes\u202e"


def test_dlq_list_shows_hostile_documents_inertly_and_ids_whole(
    agent_env: dict[str, str], work: Any
) -> None:
    long_id = "order-" + "9" * 150
    work.insert_many(
        [
            {"_id": long_id, "status": "failed", "error": {"type": "X", "message": HOSTILE}},
            {"_id": HOSTILE, "status": "failed", "error": HOSTILE},  # a plain-string error
        ]
    )
    listed = cli({**agent_env, "COLUMNS": "400"}, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in listed.stdout
    assert long_id in listed.stdout, "ids are never cut"
    assert "[bold]x[/bold]" in listed.stdout, "markup shown, not interpreted"
    assert "\nready=yes" not in listed.stdout
    as_json = cli(agent_env, "dlq", "list", "--json")
    assert as_json.returncode == 0 and len(as_json.stdout.splitlines()) == 2


def test_dlq_requeue_says_which_ids_matched_nothing(agent_env: dict[str, str], work: Any) -> None:
    work.insert_one({"_id": "a-failed-one", "status": "failed", "attempts": 5})
    result = cli(agent_env, "dlq", "requeue", "a-failed-one", "no-such-id")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"requeued": 1, "not_failed": ["no-such-id"]}
    assert "no-such-id" in result.stderr
    assert work.find_one({"_id": "a-failed-one"})["status"] == "pending"


@pytest.mark.parametrize(
    "args",
    [["--documents", "0"], ["--documents", "-5"], ["--agents", "0"]],
)
def test_demo_validates_its_options(agent_env: dict[str, str], args: list[str]) -> None:
    result = cli(agent_env, "demo", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value" in result.stderr


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


def test_cancelled_documents_are_listable(agent_env: dict[str, str], work: Any) -> None:
    work.insert_many(
        [
            {"_id": "skipped", "status": "cancelled", "cancel_reason": "duplicate order"},
            {"_id": "dead", "status": "failed", "error": {"type": "X", "message": "m"}},
        ]
    )
    listed = cli(agent_env, "dlq", "list", "--cancelled", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (entry["_id"], entry["cancel_reason"]) == ("skipped", "duplicate order")
    table = cli({**agent_env, "COLUMNS": "200"}, "dlq", "list", "--cancelled")
    assert "duplicate order" in table.stdout and "dead" not in table.stdout


def test_cancel_from_the_command_line(agent_env: dict[str, str], work: Any) -> None:
    work.insert_many([{"_id": 7, "status": "pending"}, {"_id": "done", "status": "processed"}])
    result = cli(agent_env, "cancel", "7", "done")
    assert result.returncode == 1, "one id matched nothing cancellable"
    assert json.loads(result.stdout) == {"cancelled": ["7"], "requested": [], "not_found": ["done"]}
    assert work.find_one({"_id": 7})["status"] == "cancelled"


def test_get_shows_one_document(agent_env: dict[str, str], work: Any) -> None:
    work.insert_many(
        [
            {
                "_id": 5,
                "status": "failed",
                "attempts": 3,
                "progress": {"step": 2},
                "error": {"type": "ValueError", "message": "bad \x1b[2J input"},
                "errors": [{"type": "ValueError"}] * 3,
            },
            {"_id": "typo", "status": "Pending"},
        ]
    )
    shown = cli({**agent_env, "COLUMNS": "200"}, "get", "5")
    assert shown.returncode == 0, shown.stderr
    assert "ValueError" in shown.stdout and "3 recorded" in shown.stdout
    assert "\x1b" not in shown.stdout
    as_json = json.loads(cli(agent_env, "get", "5", "--json").stdout)
    assert (as_json["_id"], as_json["progress"], as_json["problems"]) == (5, {"step": 2}, [])
    typo = json.loads(cli(agent_env, "get", "typo", "--json").stdout)
    assert typo["problems"][0]["field"] == "status"
    missing = cli(agent_env, "get", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr


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


def test_enqueue_from_the_command_line(agent_env: dict[str, str], work: Any) -> None:
    args = ("enqueue", '{"to": "a@example.com"}', "--key", "k1", "--type", "email", "--json")
    first = cli(agent_env, *args, "--priority", "5", "--delay", "5m")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert (made["created"], made["key"]) == (True, "k1")
    again = json.loads(cli(agent_env, *args).stdout)
    assert (again["created"], again["_id"]) == (False, made["_id"])
    [doc] = work.find({}).to_list()
    assert (doc["to"], doc["type"], doc["priority"], doc["status"]) == (
        "a@example.com",
        "email",
        5,
        "pending",
    )
    assert doc["available_at"] > doc["enqueued_at"]

    lines = '{"n": 1}\n\n{"n": 2, "when": {"$date": "2026-01-02T00:00:00Z"}}\n'
    many = cli(agent_env, "enqueue", "-", stdin=lines)
    assert many.returncode == 0, many.stderr
    assert many.stdout.count("enqueued: ") == 2
    assert isinstance(work.find_one({"n": 2})["when"], datetime), "Extended JSON read as BSON"


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["[1, 2]"], "", "JSON object"),
        (["{nope"], "", "not JSON"),
        (['{"status": "done"}'], "", "agents own"),
        (["{}", "--delay", "soon"], "", "--delay"),
        (["{}", "--priority", "-4"], "", "priority"),
        (["-", "--key", "k"], '{"a": 1}\n{"b": 2}\n', "one document"),
        (["-"], '{"a": 1}\n"\x1b[2J"\n', "line 2"),
    ],
)
def test_enqueue_refuses_bad_input_with_one_line_and_writes_nothing(
    agent_env: dict[str, str], work: Any, args: list[str], stdin: str, says: str
) -> None:
    result = cli(agent_env, "enqueue", *args, stdin=stdin)
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "\x1b" not in result.stderr
    assert work.find({}).to_list() == []
