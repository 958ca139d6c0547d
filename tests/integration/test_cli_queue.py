"""``pulling-agent enqueue``, ``get``, ``cancel`` and ``dlq`` in process (typer's CliRunner)
against the test's database: hostile values shown inertly, ids whole, bad input refused
with one line and nothing written."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import invoke, wait_until

HOSTILE = "\x1b]0;pwned\x07\x1b[2J[bold]x[/bold]\nready=yes\u202e"


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_dlq_list_shows_hostile_documents_inertly_and_ids_whole(
    cli_env: dict[str, str | None], work: Any
) -> None:
    long_id = "order-" + "9" * 150
    work.insert_many(
        [
            {"_id": long_id, "status": "failed", "error": {"type": "X", "message": HOSTILE}},
            {"_id": HOSTILE, "status": "failed", "error": HOSTILE},  # a plain-string error
        ]
    )
    listed = invoke({**cli_env, "COLUMNS": "400"}, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in listed.stdout
    assert long_id in listed.stdout, "ids are never cut"
    assert "[bold]x[/bold]" in listed.stdout, "markup shown, not interpreted"
    assert "\nready=yes" not in listed.stdout
    as_json = invoke(cli_env, "dlq", "list", "--json")
    assert as_json.returncode == 0 and len(as_json.stdout.splitlines()) == 2


def test_dlq_requeue_says_which_ids_matched_nothing(
    cli_env: dict[str, str | None], work: Any
) -> None:
    work.insert_one({"_id": "a-failed-one", "status": "failed", "attempts": 5})
    result = invoke(cli_env, "dlq", "requeue", "a-failed-one", "no-such-id")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"requeued": 1, "not_failed": ["no-such-id"]}
    assert "no-such-id" in result.stderr
    assert work.find_one({"_id": "a-failed-one"})["status"] == "pending"


def test_cancelled_documents_are_listable(cli_env: dict[str, str | None], work: Any) -> None:
    work.insert_many(
        [
            {"_id": "skipped", "status": "cancelled", "cancel_reason": "duplicate order"},
            {"_id": "dead", "status": "failed", "error": {"type": "X", "message": "m"}},
        ]
    )
    listed = invoke(cli_env, "dlq", "list", "--cancelled", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (entry["_id"], entry["cancel_reason"]) == ("skipped", "duplicate order")
    table = invoke({**cli_env, "COLUMNS": "200"}, "dlq", "list", "--cancelled")
    assert "duplicate order" in table.stdout and "dead" not in table.stdout


def test_cancel_from_the_command_line(cli_env: dict[str, str | None], work: Any) -> None:
    work.insert_many([{"_id": 7, "status": "pending"}, {"_id": "done", "status": "processed"}])
    result = invoke(cli_env, "cancel", "7", "done")
    assert result.returncode == 1, "one id matched nothing cancellable"
    assert json.loads(result.stdout) == {"cancelled": ["7"], "requested": [], "not_found": ["done"]}
    assert work.find_one({"_id": 7})["status"] == "cancelled"


def test_get_shows_one_document(cli_env: dict[str, str | None], work: Any) -> None:
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
            {"_id": 6, "status": "processed", "result": {"file": "[bold]x[/bold]\x1b[2J.csv"}},
            {"_id": 7, "status": "processed", "trace_context": {"traceparent": TRACEPARENT}},
        ]
    )
    trace_id = TRACEPARENT.split("-")[1]
    linked = {**cli_env, "COLUMNS": "200", "TRACE_URL": "https://jaeger.example/trace/{trace_id}"}
    assert f"https://jaeger.example/trace/{trace_id}" in invoke(linked, "get", "7").stdout
    assert json.loads(invoke(cli_env, "get", "7", "--json").stdout)["trace"] == {"id": trace_id}
    assert json.loads(invoke(cli_env, "get", "6", "--json").stdout)["trace"] is None
    result = invoke({**cli_env, "COLUMNS": "200"}, "get", "6")
    assert "[bold]x[/bold]" in result.stdout and "\x1b" not in result.stdout, "inert text"
    assert json.loads(invoke(cli_env, "get", "6", "--json").stdout)["result"] == {
        "file": "[bold]x[/bold]\x1b[2J.csv"
    }
    shown = invoke({**cli_env, "COLUMNS": "200"}, "get", "5")
    assert shown.returncode == 0, shown.stderr
    assert "ValueError" in shown.stdout and "3 recorded" in shown.stdout
    assert "\x1b" not in shown.stdout
    as_json = json.loads(invoke(cli_env, "get", "5", "--json").stdout)
    assert (as_json["_id"], as_json["progress"], as_json["problems"]) == (5, {"step": 2}, [])
    typo = json.loads(invoke(cli_env, "get", "typo", "--json").stdout)
    assert typo["problems"][0]["field"] == "status"
    missing = invoke(cli_env, "get", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_get_says_which_fleet_wide_limit_a_document_waits_for(
    cli_env: dict[str, str | None], work: Any
) -> None:
    work.insert_many(
        [
            {"_id": n, "status": "processing", "type": "invoice", "limit_slot": f"t:invoice#{n}"}
            for n in range(3)
        ]
        + [
            {"_id": 9, "status": "pending", "type": "invoice", "tenant": "a\x1b[2J"},
            {
                "_id": 10,
                "status": "processing",
                "tenant": "a\x1b[2J",
                "key_slot": "k:*=s:a\x1b[2J#0",
            },
            {"_id": 11, "status": "pending", "type": "email"},
        ]
    )
    env = {
        **cli_env,
        "COLUMNS": "300",
        "TYPE_FLEET_CONCURRENCY": "invoice=3",
        "CONCURRENCY_KEY": "tenant",
        "KEY_CONCURRENCY": "1",
    }
    shown = invoke(env, "get", "9")
    assert shown.returncode == 0, shown.stderr
    assert "waiting for" in shown.stdout and "invoice (3/3 running)" in shown.stdout
    assert "\x1b" not in shown.stdout, "a hostile key value is shown inertly"
    as_json = json.loads(invoke(env, "get", "9", "--json").stdout)
    assert as_json["waiting_for"] == [
        "a slot of invoice (3/3 running)",
        "a slot of tenant='a\\x1b[2J' (1/1 running)",
    ]
    assert json.loads(invoke(env, "get", "11", "--json").stdout)["waiting_for"] == []


def test_enqueue_from_the_command_line(cli_env: dict[str, str | None], work: Any) -> None:
    args = ("enqueue", '{"to": "a@example.com"}', "--key", "k1", "--type", "email", "--json")
    first = invoke(cli_env, *args, "--priority", "5", "--delay", "5m")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert (made["created"], made["key"]) == (True, "k1")
    again = json.loads(invoke(cli_env, *args).stdout)
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
    many = invoke(cli_env, "enqueue", "-", stdin=lines)
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
    cli_env: dict[str, str | None], work: Any, args: list[str], stdin: str, says: str
) -> None:
    result = invoke(cli_env, "enqueue", *args, stdin=stdin)
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "\x1b" not in result.stderr
    assert work.find({}).to_list() == []


def test_enqueue_refuses_a_key_another_type_holds(
    cli_env: dict[str, str | None], work: Any
) -> None:
    assert invoke(cli_env, "enqueue", "{}", "--key", "order-1", "--type", "email").returncode == 0
    refused = invoke(cli_env, "enqueue", "{}", "--key", "order-1", "--type", "invoice")
    assert refused.returncode == 1
    assert "belongs to a document of type 'email'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert work.count_documents({}) == 1


def test_at_80_columns_ids_stay_whole_and_values_keep_their_type(
    cli_env: dict[str, str | None], work: Any
) -> None:
    ids = work.insert_many(
        [
            {
                "status": "failed",
                "attempts": 3,
                "failed_at": datetime.now(UTC),
                "error": {"type": "ValueError", "message": "x" * 300},
            }
            for _ in range(3)
        ]
    ).inserted_ids
    narrow = {**cli_env, "COLUMNS": "80"}
    listed = invoke(narrow, "dlq", "list").stdout
    for doc_id in ids:
        assert str(doc_id) in listed, "an id on one line, whole: dlq requeue takes it"
    work.insert_one(
        {
            "_id": "typed",
            "status": "failed",
            "attempts": "3",
            "error": {"type": "E", "message": "m"},
        }
    )
    shown = invoke(narrow, "get", "typed").stdout
    assert '"3"' in shown, "a string is shown as a string"
    assert "E: m" in shown and "{'type'" not in shown, "the error in words, not a dict"


def test_the_cancelled_list_says_what_it_lists(cli_env: dict[str, str | None], work: Any) -> None:
    work.insert_one({"_id": "s", "status": "cancelled", "cancel_reason": "duplicate order"})
    listed = invoke({**cli_env, "COLUMNS": "120"}, "dlq", "list", "--cancelled").stdout
    assert "Cancelled (1 shown)" in listed and "cancelled_at" in listed
    assert "Dead letter" not in listed and "failed_at" not in listed


def test_enqueue_after_other_documents_from_the_command_line(
    cli_env: dict[str, str | None], work: Any
) -> None:
    a = work.insert_one({"status": "pending", "n": "a"}).inserted_id  # an ObjectId
    work.insert_one({"_id": 7, "status": "pending"})
    made = invoke(cli_env, "enqueue", '{"n": "b"}', "--after", str(a), "--after", "7", "--json")
    assert made.returncode == 0, made.stderr
    b = work.find_one({"n": "b"})
    assert (b["status"], b["after"], b["waiting"]) == ("waiting", [a, 7], 2)
    shown = invoke({**cli_env, "COLUMNS": "200"}, "get", str(b["_id"]))
    assert shown.returncode == 0 and "waiting" in shown.stdout and "after" in shown.stdout

    for args, says in [
        (["--after", "no-such-document"], "--after 'no-such-document': no document has this _id"),
        (["--run-anyway"], "--run-anyway goes with --after"),
    ]:
        refused = invoke(cli_env, "enqueue", '{"n": "c"}', *args)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [f"pulling-agent: {says}"]
    assert work.find_one({"n": "c"}) is None, "nothing written"


def test_get_shows_a_members_batch_progress(cli_env: dict[str, str | None], work: Any) -> None:
    from pulling_agent.client import Job, enqueue_many

    batch = enqueue_many(work, [{"n": 1}, {"n": 2}], then=Job({"report": 1}))
    shown = invoke({**cli_env, "COLUMNS": "200"}, "get", str(batch[0].id))
    assert "0 processed, 0 failed, 0 cancelled of 2 (sealed); then job waiting" in shown.stdout
    as_json = json.loads(invoke(cli_env, "get", str(batch.then.id), "--json").stdout)
    assert as_json["batch"]["size"] == 2 and as_json["status"] == "waiting"


def test_dlq_requeue_with_dependents_brings_them_back(
    cli_env: dict[str, str | None], work: Any
) -> None:
    from pulling_agent.queue import workflow as wf

    key = wf.dep_key("a")
    work.insert_many(
        [
            {"_id": "a", "status": "failed", "attempts": 5, wf.DEPENDENTS: True},
            {"_id": "b", "status": "cancelled", "after": ["a"], wf.CANCELLED_BY: key},
        ]
    )
    result = invoke(cli_env, "dlq", "requeue", "a", "--with-dependents")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "requeued": 1,
        "not_failed": [],
        "dependents_waiting_again": 1,
    }
    b = work.find_one({"_id": "b"})
    assert (b["status"], b["waiting"], b[wf.WAITING_ON]) == ("waiting", 1, {key: "a"})


def test_enqueue_wait_prints_the_result_and_exits_by_the_outcome(
    cli_env: dict[str, str | None], work: Any
) -> None:
    def finish(n: int, update: dict[str, Any]) -> threading.Thread:
        """An agent's outcome, once the command has enqueued the document."""

        def write() -> None:
            wait_until(lambda: work.find_one({"n": n}) is not None, 20, what=f"n={n} enqueued")
            work.update_one({"n": n}, update)

        thread = threading.Thread(target=write)
        thread.start()
        return thread

    writer = finish(1, {"$set": {"status": "processed", "result": {"rows": 3, "x": "\x1b[2J"}}})
    done = invoke(cli_env, "enqueue", '{"n": 1}', "--wait", "30")
    writer.join(20)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.splitlines()[-1])
    assert line["result"] == {"rows": 3, "x": "\x1b[2J"}, "JSON: escapes stay inert"
    assert "\x1b" not in done.stdout
    writer = finish(2, {"$set": {"status": "failed", "error": {"type": "ValueError"}}})
    failed = invoke(cli_env, "enqueue", '{"n": 2}', "--wait", "30")
    writer.join(20)
    assert failed.returncode == 1 and "ValueError" in failed.stderr
    late = invoke(cli_env, "enqueue", '{"n": 3}', "--wait", "0.3")
    assert late.returncode == 3 and "still pending" in late.stderr
    assert invoke(cli_env, "enqueue", '{"n": 4}', "--wait", "-1").returncode == 2
