"""``pulling-agent doctor`` in process (typer's CliRunner) against the test's database, and
every command that reads MongoDB giving up on an unreachable server with one line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import invoke
from tests.unit.test_documents import EVERY_BAD_SHAPE, FINE


def test_doctor_explains_every_bad_shape(cli_env: dict[str, str | None], work: Any) -> None:
    work.insert_many([*EVERY_BAD_SHAPE, *FINE])
    result = invoke(cli_env, "doctor", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["found"] == len(EVERY_BAD_SHAPE)
    assert sorted(d["_id"] for d in report["documents"]) == sorted(
        d["_id"] for d in EVERY_BAD_SHAPE
    )
    table = invoke({**cli_env, "COLUMNS": "250"}, "doctor")
    assert table.returncode == 1
    assert "attempts-string" in table.stdout and "set status to 'pending'" in table.stdout


def test_doctor_is_quiet_on_a_healthy_collection(cli_env: dict[str, str | None], work: Any) -> None:
    work.insert_many(FINE)
    result = invoke(cli_env, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No stuck documents" in result.stdout


@pytest.mark.parametrize(
    "args",
    [["doctor"], ["dlq", "list"], ["ctl", "status", "--mongodb-uri", "URI"], ["demo"]],
)
def test_commands_give_up_on_an_unreachable_server_with_one_line(
    cli_env: dict[str, str | None], args: list[str]
) -> None:
    uri = "mongodb://user:s3cret-pass@127.0.0.1:1/?serverSelectionTimeoutMS=60000"
    env = {**cli_env, "MONGODB_URI": uri}
    result = invoke(env, *[uri if a == "URI" else a for a in args])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ServerSelectionTimeoutError" in lines[0]
    assert "s3cret-pass" not in result.stderr + result.stdout


HOSTILE = "\x1b]0;pwned\x07\x1b[2J[bold]x[/bold]\nready=yes\u202e"


def test_credentials_the_server_cannot_use_are_one_line_with_the_hint(
    cli_env: dict[str, str | None], mongo_uri: str
) -> None:
    uri = mongo_uri.replace("mongodb://", "mongodb://someone:pw-0123456789@", 1)
    for args in (["dlq", "list"], ["demo", "--documents", "5"]):
        result = invoke({**cli_env, "MONGODB_URI": uri}, *args)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "credentials" in lines[0], result.stderr
        assert "pw-0123456789" not in result.stderr + result.stdout


def test_doctor_finds_waits_that_never_end_and_says_what_is_retained(
    cli_env: dict[str, str | None], work: Any
) -> None:
    from pulling_agent.queue import workflow as wf

    def waits_for(doc_id: str, dep: str) -> dict[str, Any]:
        key = wf.dep_key(dep)
        return {"_id": doc_id, "status": "waiting", wf.WAITING_ON: {key: dep}, wf.WAITING: 1}

    work.insert_many(
        [
            waits_for("orphan", "deleted-long-ago"),
            waits_for("ping", "pong"),
            waits_for("pong", "ping"),
            {"_id": "fine", "status": "pending"},
            waits_for("patient", "fine"),
        ]
    )
    work.create_index("processed_at", expireAfterSeconds=7 * 86_400, name="keep-a-week")
    result = invoke(cli_env, "doctor", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert sorted(d["_id"] for d in report["documents"]) == ["orphan", "ping", "pong"]
    assert report["retention_seconds"] == {
        "processed": 604800.0,
        "failed": None,
        "cancelled": None,
    }
    table = invoke({**cli_env, "COLUMNS": "250"}, "doctor")
    assert "waits in a cycle" in table.stdout and "which does not exist" in table.stdout
    assert "Retention (finished documents kept): processed 7d, failed for ever" in table.stdout
