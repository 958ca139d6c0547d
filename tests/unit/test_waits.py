"""queue.waits: why a waiting document may wait for ever (pure)."""

from __future__ import annotations

from typing import Any

from pulling_agent.queue import waits
from pulling_agent.queue import workflow as wf


def waiting(doc_id: Any, *deps: Any) -> dict[str, Any]:
    keys = {wf.dep_key(d): d for d in deps}
    return {"_id": doc_id, "status": "waiting", wf.WAITING_ON: keys, wf.WAITING: len(keys)}


def test_a_well_formed_wait_has_no_problem() -> None:
    doc = waiting("b", "a")
    assert waits.examine([doc], {wf.dep_key("a"): "pending"}) == {}


def test_a_dependency_that_does_not_exist_is_named_with_the_fix() -> None:
    [problem] = waits.examine([waiting("b", "gone")], {})["b"]
    assert "waits for gone, which does not exist" in problem.reason
    assert f"$unset waiting_on.{wf.dep_key('gone')}" in problem.fix


def test_cycles_are_found_whatever_their_length() -> None:
    docs = [waiting("a", "b"), waiting("b", "c"), waiting("c", "a"), waiting("self", "self")]
    docs += [waiting(f"x{n}", f"x{n + 1}") for n in range(20_000)]  # a long chain: no cycle
    found = waits.examine(docs, {wf.dep_key(d["_id"]): "waiting" for d in docs})
    assert {k for k, v in found.items() if any("cycle" in p.reason for p in v)} == {
        "a",
        "b",
        "c",
        "self",
    }
    assert "x0" not in found, "a chain whose end does not exist is not a cycle"


def test_hand_written_waits_and_open_batches_are_explained() -> None:
    bad = {"_id": 1, "status": "waiting", wf.WAITING_ON: {"k": "a"}, wf.WAITING: 1}
    count = {**waiting(2, "a"), wf.WAITING: 5}
    opened = {"_id": 3, "status": "waiting", wf.BATCH: {"id": "b", "size": 9, "state": "open"}}
    junk = {"_id": 4, "status": "waiting", wf.BATCH: ["x"]}
    sealed = {"_id": 5, "status": "waiting", wf.BATCH: {"id": "b", "size": 9, "state": "sealed"}}
    found = waits.examine([bad, count, opened, junk, sealed], {wf.dep_key("a"): "pending"})
    assert set(found) == {1, 2, 3, 4}
    assert "were not written by an agent" in found[1][0].reason
    assert "producer stopped while enqueueing" in found[3][0].reason


def test_progress_is_one_inert_line() -> None:
    then = {
        "status": "waiting",
        wf.BATCH: {
            "id": "b",
            "size": 3,
            "state": "sealed",
            "processed": 2,
            "failed": 0,
            "cancelled": "\x1b[2J",
        },
    }
    line = waits.progress(then)
    assert line.startswith("2 processed, 0 failed, ") and line.endswith(
        "of 3 (sealed); then job waiting"
    )
    assert "\x1b" not in line
    assert waits.progress({"batch": "x"}) == "not a batch"
