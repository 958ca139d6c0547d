"""The producer in the caller's transaction (the outbox): ``enqueue``, ``enqueue_many``
(with ``after``/``then``) and ``cancel`` with ``session=``, sync and async, over the wire.

Command monitoring checks what no server can hide: every command of the call carries the
session's ``lsid`` and the transaction's ``txnNumber`` (the indexes, made first, carry
neither: an index build cannot join a transaction). Commit and abort are checked on the
documents themselves; against MongoDB (``TEST_MONGODB_URI``, a replica set) the same tests
run unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from pulling_agent.client import InvalidJob, Job, aio, cancel, enqueue, enqueue_many
from pulling_agent.queue import workflow as wf
from tests.deviations import NO_TRANSACTION_ISOLATION, nx_deviation
from tests.integration.conftest import Recorder, listened


@pytest.fixture
def watched(mongo_uri: str, db_name: str) -> Iterator[tuple[Any, Recorder]]:
    """The test's work collection through a sync client whose commands are recorded."""
    commands = Recorder()
    with listened(mongo_uri, db_name, commands) as collection:
        yield collection, commands
        collection.database.client.drop_database(db_name)


@pytest.fixture
async def awork(recorded: tuple[Any, Recorder]) -> Any:
    return recorded[0]


def _in_transaction(sent: list[tuple[str, dict[str, Any]]], lsid: Any) -> None:
    """Every command but the index builds is the session's transaction's."""
    assert sent, "the call sent nothing"
    for name, command in sent:
        if name == "createIndexes":
            assert "txnNumber" not in command, "an index build cannot join a transaction"
            continue
        assert command.get("lsid") == lsid, f"{name} outside the session"
        assert command.get("txnNumber") is not None, f"{name} outside the transaction"
        assert command.get("autocommit") is False, name


def test_a_workflow_enqueued_in_a_transaction_is_all_in_it_and_commits(
    watched: tuple[Any, Recorder],
) -> None:
    work, commands = watched
    [dep] = enqueue_many(work, [{"n": "dep"}])
    commands.take()
    client = work.database.client
    with client.start_session() as session, session.start_transaction():
        order = work.database["orders"].insert_one({"total": 5}, session=session)
        batch = enqueue_many(
            work,
            [Job({"ship": order.inserted_id}, key="ship-1", after=[dep.id]), {"n": 2}],
            then=Job({"report": True}),
            session=session,
        )
        cancelled = cancel(work, [batch[1].id], session=session)
        sent, lsid = commands.take(), session.session_id
    _in_transaction(sent, lsid)
    assert {name for name, _ in sent} >= {"insert", "update", "find", "createIndexes"}
    assert cancelled.cancelled == [batch[1].id]
    ship = work.find_one({"_id": batch[0].id})
    assert ship["status"] == "waiting" and ship[wf.WAITING] == 1, "waits for its dependency"
    assert work.find_one({"_id": dep.id})[wf.LINKED] == 1
    assert work.find_one({"_id": batch[1].id})["status"] == "cancelled"
    assert work.find_one({"_id": batch.then.id})["status"] == "waiting"
    assert work.database["orders"].count_documents({}) == 1


async def test_the_async_client_runs_every_command_in_the_transaction(
    recorded: tuple[Any, Recorder],
) -> None:
    work, commands = recorded
    [dep] = await aio.enqueue_many(work, [{"n": "dep"}])
    commands.take()
    async with (
        work.database.client.start_session() as session,
        await session.start_transaction(),
    ):
        one = await aio.enqueue(work, {"n": 1}, key="a-1", after=[dep.id], session=session)
        batch = await aio.enqueue_many(
            work, [{"n": 2}], then=Job({"report": True}), session=session
        )
        result = await aio.cancel(work, [batch[0].id], session=session)
        sent, lsid = commands.take(), session.session_id
    _in_transaction(sent, lsid)
    assert result.cancelled == [batch[0].id]
    assert (await work.find_one({"_id": one.id}))["status"] == "waiting"
    then = await work.find_one({"_id": batch.then.id})
    assert then["status"] == "pending", "its only member was cancelled: the batch closed"


def test_an_aborted_transaction_leaves_no_job(work: Any) -> None:
    [dep] = enqueue_many(work, [{"n": "dep"}])
    client = work.database.client
    with client.start_session() as session, pytest.raises(RuntimeError, match="order failed"):
        _order_that_fails(work, session, dep.id)
    assert work.database["orders"].find({}).to_list() == []
    assert list(work.find({}, {"_id": 0, "n": 1, "status": 1})) == [
        {"n": "dep", "status": "pending"}
    ], "no job, no link, no cancel: the dependency is as it was"
    assert wf.DEPENDENTS not in work.find_one({"_id": dep.id})


def _order_that_fails(work: Any, session: Any, dep: Any) -> None:
    with session.start_transaction():
        work.database["orders"].insert_one({"total": 5}, session=session)
        enqueue(work, {"ship": 1}, key="ship-1", after=[dep], session=session)
        enqueue_many(work, [{"n": 2}], then=Job({"report": True}), session=session)
        cancel(work, [dep], session=session)
        raise RuntimeError("the order failed")


async def _async_order_that_fails(work: Any, session: Any) -> None:
    async with await session.start_transaction():
        await aio.enqueue_many(work, [{"n": 1}], then=Job({"report": True}), session=session)
        raise RuntimeError("abort")


async def test_an_aborted_async_transaction_leaves_no_job(awork: Any) -> None:
    async with awork.database.client.start_session() as session:
        with pytest.raises(RuntimeError, match="abort"):
            await _async_order_that_fails(awork, session)
    assert await awork.find({}).to_list() == []


@nx_deviation(NO_TRANSACTION_ISOLATION)
def test_a_job_is_not_seen_before_its_transaction_commits(work: Any) -> None:
    """An agent (another session) cannot claim a job whose order may still be rolled back."""
    client = work.database.client
    with client.start_session() as session, session.start_transaction():
        enqueue(work, {"ship": 1}, session=session)
        assert work.count_documents({}) == 0, "visible outside the transaction before commit"
    assert work.count_documents({}) == 1


def test_keys_taken_are_reported_in_a_transaction_not_refused(
    watched: tuple[Any, Recorder],
) -> None:
    """A duplicate key would abort the transaction: keys and given ids are looked up in it
    first, and an already-enqueued job is ``created=False`` as outside one."""
    work, commands = watched
    old = enqueue(work, {"n": "old"}, key="k-old")
    enqueue(work, {"_id": "mine"})
    commands.take()
    client = work.database.client
    with client.start_session() as session, session.start_transaction():
        results = enqueue_many(
            work,
            [
                Job({"n": 1}, key="k-old"),
                Job({"n": 2}, key="k-new"),
                Job({"n": 3}, key="k-new"),  # twice in one call
                {"_id": "mine"},
                {"_id": "yours"},
                {"_id": "yours"},
            ],
            session=session,
        )
        sent = commands.take()
    assert [r.created for r in results] == [False, True, False, False, True, False]
    assert results[0].id == old.id and results[1].id == results[2].id
    assert [name for name, _ in sent] == ["find", "insert"], "one look-up, one insert"
    assert len(sent[1][1]["documents"]) == 2, "only the new documents are sent"
    assert work.count_documents({}) == 4


def test_a_session_of_another_client_or_kind_is_refused_before_anything_is_written(
    work: Any, mongo_uri: str
) -> None:
    other: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        with other.start_session() as session:
            with pytest.raises(InvalidJob, match="another client"):
                enqueue(work, {"n": 1}, session=session)
            with pytest.raises(InvalidJob, match="another client"):
                cancel(work, ["x"], session=session)
        with pytest.raises(InvalidJob, match="session must be a pymongo"):
            enqueue(work, {"n": 1}, session="not a session")  # type: ignore[arg-type]
    finally:
        other.close()
    assert work.count_documents({}) == 0


async def test_the_async_client_refuses_a_sync_session(work: Any, awork: Any) -> None:
    with (
        work.database.client.start_session() as session,
        pytest.raises(InvalidJob, match="AsyncClientSession"),
    ):
        await aio.enqueue(awork, {"n": 1}, session=session)
    assert await awork.find({}).to_list() == []


def test_a_session_without_a_transaction_sends_every_command_with_it(
    watched: tuple[Any, Recorder],
) -> None:
    """Causal consistency without a transaction: the session's lsid, no txnNumber, and the
    usual enqueue (keys by the insert's refusal, not looked up first)."""
    work, commands = watched
    enqueue(work, {"n": 0}, key="k")
    commands.take()
    with work.database.client.start_session() as session:
        again = enqueue(work, {"n": 1}, key="k", session=session)
        sent, lsid = commands.take(), session.session_id
    assert not again.created
    assert [name for name, _ in sent] == ["insert", "find"]
    for _, command in sent:
        assert command["lsid"] == lsid and "txnNumber" not in command
