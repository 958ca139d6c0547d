"""``pulling-agent doctor`` in process (typer's CliRunner) against the test's database, and
every command that reads MongoDB giving up on an unreachable server with one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
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


def _slot_holders(work: Any, hostile: str) -> None:
    from pulling_agent.queue.indexes import SLOT_INDEXES

    for name, spec in SLOT_INDEXES.items():
        work.create_index(spec.keys, name=name, **spec.options)
    now = datetime.now(UTC)

    def lease(expired: float) -> dict[str, Any]:
        return {"owner": "gone-agent", "token": "t", "expires_at": now - timedelta(seconds=expired)}

    work.insert_many(
        [
            # a dead agent's document nobody took over, two hours after its lease
            {
                "_id": "dead",
                "status": "processing",
                "attempts": 1,
                "type": "invoice",
                "lease": lease(7200),
                "limit_slot": "t:invoice#0",
            },
            # just expired: recovery will take it over (not reported)
            {
                "_id": "recent",
                "status": "processing",
                "attempts": 1,
                "type": "invoice",
                "lease": lease(1),
                "limit_slot": "t:invoice#1",
            },
            # live: (not reported)
            {
                "_id": "live",
                "status": "processing",
                "attempts": 1,
                "type": "mail",
                "lease": lease(-600),
                "key_slot": "k:*=s:acme#0",
            },
            # a producer wrote the agent's field on a pending document, hostile text in it
            {"_id": "stray", "status": "pending", "attempts": 0, "key_slot": f"k:*=s:{hostile}#0"},
            # not a slot string of ours: ignored
            {"_id": "odd", "status": "pending", "attempts": 0, "limit_slot": "t:x#not-a-number"},
        ]
    )


def test_doctor_names_slots_nobody_gives_back(cli_env: dict[str, str | None], work: Any) -> None:
    hostile = "\x1b]0;pwned\x07[bold]x[/bold]\u202e"
    _slot_holders(work, hostile)
    env = {**cli_env, "LEASE_SECONDS": "60", "TYPE_FLEET_CONCURRENCY": "invoice=2"}
    result = invoke(env, "doctor", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    stale = {s["_id"]: s for s in json.loads(result.stdout)["stale_slots"]}
    assert sorted(stale) == ["dead", "stray"]
    assert (
        "gone-agent" in stale["dead"]["reason"] and "expired 7200 s ago" in stale["dead"]["reason"]
    )
    assert "pending, not processing" in stale["stray"]["reason"]
    table = invoke({**env, "COLUMNS": "250"}, "doctor")
    assert table.returncode == 1
    assert "slot 't:invoice#0'" in table.stdout and "recovery takes the document" in table.stdout
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout


def test_doctor_reads_no_slot_fields_where_no_agent_ran_with_limits(
    cli_env: dict[str, str | None], work: Any
) -> None:
    work.insert_one({"_id": "stray", "status": "pending", "attempts": 0, "limit_slot": "t:a#0"})
    result = invoke(cli_env, "doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["stale_slots"] == []


def test_doctor_names_types_held_back_by_a_limit_of_0_and_agents_that_disagree(
    cli_env: dict[str, str | None], work: Any
) -> None:
    work.insert_many(
        [{"status": "pending", "attempts": 0, "type": t} for t in ["hold"] * 3 + ["invoice"]]
    )
    # no live agent publishes limits: this environment's are the fleet's
    env = {**cli_env, "TYPE_FLEET_CONCURRENCY": "hold=0,invoice=2"}
    alone = json.loads(invoke(env, "doctor", "--json").stdout)
    assert alone["held_back_types"] == {"hold": 3} and alone["limit_disagreements"] == []
    # live agents publish theirs (registry entries): those win over this environment's
    registry = work.database["agent_registry"]
    now = datetime.now(UTC)

    def agent(agent_id: str, types: list[list[Any]]) -> dict[str, Any]:
        limits = {"waited": 0, "refused": 0, "holding": 0, "set": {"types": types}}
        return {"_id": agent_id, "heartbeat_at": now, "state": "running", "limits": limits}

    registry.insert_many([agent("a1", [["invoice", 2]]), agent("a2", [["invoice", 3]])])
    fleet = invoke({**env, "COLUMNS": "250"}, "doctor")
    assert fleet.returncode == 1, fleet.stdout + fleet.stderr
    assert "held back" not in fleet.stdout, "the live agents give hold no limit of 0"
    assert "agents claim it under different TYPE_FLEET_CONCURRENCY values" in fleet.stdout
    assert "2 on a1; 3 on a2" in fleet.stdout
    registry.update_many({}, {"$set": {"limits.set.types": [["hold", 0], ["invoice", 2]]}})
    agreed = invoke({**cli_env, "COLUMNS": "250"}, "doctor")
    assert agreed.returncode == 1
    assert "type 'hold': 3 pending document(s) held back" in agreed.stdout
    assert "different" not in agreed.stdout
