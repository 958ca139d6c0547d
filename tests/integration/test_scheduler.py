"""Scheduled jobs over the wire: two schedulers (two agents) share one schedule."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pulling_agent.control.cluster_store import ClusterControlStore
from pulling_agent.queue.tracecontext import TRACE
from pulling_agent.scheduler.definitions import JobDefinition, parse_jobs
from pulling_agent.scheduler.runner import Scheduler
from pulling_agent.scheduler.store import ScheduleStore
from tests.conftest import async_wait_until
from tests.tracing import attrs, named, spans
from tests.unit import sample_jobs

Client = AsyncMongoClient[dict[str, Any]]
__all__ = ["spans"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def fleet(
    client: Client, db_name: str
) -> AsyncIterator[Callable[[list[dict[str, Any]], int], list[Scheduler]]]:
    db = client[db_name]
    tasks: list[asyncio.Task[None]] = []
    made: list[Scheduler] = []
    sample_jobs.fired.clear()

    def make(entries: list[dict[str, Any]], count: int) -> list[Scheduler]:
        jobs: list[JobDefinition] = parse_jobs(entries, "test")
        for i in range(count):
            made.append(
                Scheduler(
                    jobs,
                    ScheduleStore(db["jobs"], db["job_runs"]),
                    ClusterControlStore(db["agent_control"]),
                    db,
                    f"agent-{i}",
                    utcnow,
                    history_days=1,
                    lease_seconds=1,
                )
            )
        return made[-count:]

    yield make
    for task in tasks:
        task.cancel()
    for scheduler in made:
        await scheduler.stop()
    await client.drop_database(db_name)


async def run_all(schedulers: list[Scheduler]) -> list[asyncio.Task[None]]:
    for scheduler in schedulers:
        await scheduler.start()
    return [asyncio.create_task(s.run()) for s in schedulers]


async def stop_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def hourly(job_id: str, func: str, **options: Any) -> dict[str, Any]:
    """A job that will not fire by itself during a test (its interval is an hour)."""
    entry = {"id": job_id, "trigger": "interval", "seconds": 3600}
    return entry | {"func": f"tests.unit.sample_jobs:{func}"} | options


async def insert_dead_run(client: Client, db_name: str) -> None:
    """A run of job ``tick`` whose agent died ten seconds ago (its lease long expired)."""
    gone = utcnow() - timedelta(seconds=10)
    await client[db_name]["job_runs"].insert_one(
        {
            "_id": "tick@dead",
            "job_id": "tick",
            "fire_time": gone,
            "agent": "agent-dead",
            "started_at": gone,
            "attempts": 1,
            "outcome": "running",
            "lease": {"owner": "agent-dead", "expires_at": gone + timedelta(seconds=1)},
        }
    )


async def runs(client: Client, db_name: str) -> list[dict[str, Any]]:
    return await client[db_name]["job_runs"].find().to_list(length=None)


async def test_each_interval_fire_runs_once_across_agents(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str
) -> None:
    entry = {
        "id": "tick",
        "trigger": "interval",
        "seconds": 1,
        "func": "tests.unit.sample_jobs:record",
    }
    tasks = await run_all(fleet([entry], 3))
    try:
        await async_wait_until(
            lambda: len(sample_jobs.fired) >= 4, timeout=30, what="four fires"
        )  # time passing is the behaviour under test
    finally:
        await stop_all(tasks)
    per_fire = Counter(fire for _, fire in sample_jobs.fired)
    assert max(per_fire.values()) == 1, f"a fire ran twice: {per_fire}"
    fires = sorted(per_fire)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(fires))
    records = [r for r in await runs(client, db_name) if r["outcome"] != "running"]
    assert {r["outcome"] for r in records} == {"succeeded"}


async def test_date_job_in_the_past_runs_once_within_grace_else_is_missed(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str
) -> None:
    now = utcnow()
    entries = [
        {
            "id": "recent",
            "trigger": "date",
            "run_date": (now - timedelta(seconds=5)).isoformat(),
            "func": "tests.unit.sample_jobs:record",
        },
        {
            "id": "ancient",
            "trigger": "date",
            "run_date": (now - timedelta(hours=1)).isoformat(),
            "func": "tests.unit.sample_jobs:record",
        },
    ]
    tasks = await run_all(fleet(entries, 2))
    try:

        async def both_recorded() -> bool:
            done = [r for r in await runs(client, db_name) if r["outcome"] != "running"]
            return len(done) == 2

        await async_wait_until(both_recorded, timeout=30)
    finally:
        await stop_all(tasks)
    outcomes = {r["job_id"]: r["outcome"] for r in await runs(client, db_name)}
    assert outcomes == {"recent": "succeeded", "ancient": "missed"}
    assert [job for job, _ in sample_jobs.fired] == ["recent"]


async def test_scheduled_pause_action_issues_a_cluster_pause(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str
) -> None:
    entry = {
        "id": "window",
        "trigger": "date",
        "run_date": utcnow().isoformat(),
        "action": "pause",
        "reason": "maintenance",
    }
    tasks = await run_all(fleet([entry], 2))
    control = ClusterControlStore(client[db_name]["agent_control"])
    try:
        await async_wait_until(control.read, timeout=30, what="control document")
    finally:
        await stop_all(tasks)
    state = await control.read()
    assert state is not None
    assert (state.command, state.reason, state.updated_by, state.version) == (
        "pause",
        "maintenance",
        "scheduler:window",
        1,
    )


async def test_a_run_whose_agent_died_is_marked_failed_not_lost(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str
) -> None:
    [survivor] = fleet(
        [hourly("tick", "record")],
        1,
    )
    await survivor.start()
    await insert_dead_run(client, db_name)
    await survivor.tick()
    run = await client[db_name]["job_runs"].find_one({"_id": "tick@dead"})
    assert run is not None
    assert run["outcome"] == "failed"
    assert "agent-dead died" in run["result"]["error"]
    assert sample_jobs.fired == [], "not re-run unless the job says retry"


async def test_a_failing_job_records_its_error(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str
) -> None:
    [scheduler] = fleet(
        [hourly("boom", "explode")],
        1,
    )
    await scheduler.start()
    run_id = await scheduler.run_now("boom")
    await async_wait_until(lambda: not scheduler._running, timeout=30)
    run = await client[db_name]["job_runs"].find_one({"_id": run_id})
    assert run is not None
    assert run["outcome"] == "failed"
    assert run["result"]["error"] == "RuntimeError: job failed on purpose"


async def test_a_run_whose_agent_died_is_run_again_when_the_job_says_retry(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str
) -> None:
    [survivor] = fleet(
        [hourly("tick", "record", retry=True)],
        1,
    )
    await survivor.start()
    await insert_dead_run(client, db_name)
    await survivor.tick()
    await async_wait_until(lambda: not survivor._running, timeout=30)
    run = await client[db_name]["job_runs"].find_one({"_id": "tick@dead"})
    assert run is not None
    assert (run["outcome"], run["attempts"], run["agent"]) == ("succeeded", 2, "agent-0")
    assert [job for job, _ in sample_jobs.fired] == ["tick"]


async def test_pause_and_resume_a_job(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str
) -> None:
    from pulling_agent.errors import NotFound
    from pulling_agent.fleet.registry import AgentRegistry
    from pulling_agent.scheduler.service import JobService

    [scheduler] = fleet(
        [
            {
                "id": "tick",
                "trigger": "interval",
                "seconds": 1,
                "func": "tests.unit.sample_jobs:record",
            }
        ],
        1,
    )
    await scheduler.start()
    db = client[db_name]
    service = JobService(
        ScheduleStore(db["jobs"], db["job_runs"]), AgentRegistry(db["agents"], 5), scheduler, utcnow
    )
    assert await service.set_paused("tick", True) == {"job_id": "tick", "paused": True}
    await scheduler.tick()
    [listed] = await service.list_jobs()
    assert listed["paused"] is True
    assert listed["orphaned"] is True, "no live agent has registered it"
    assert sample_jobs.fired == []
    await service.set_paused("tick", False)
    [listed] = await service.list_jobs()
    next_fire = datetime.fromisoformat(listed["next_fire_time"])
    assert next_fire > utcnow() - timedelta(seconds=1), "resumed from now, no catch-up"
    with pytest.raises(NotFound):
        await service.runs("nope", 5)


async def test_a_scheduled_run_is_a_span_its_documents_carry(
    fleet: Callable[..., list[Scheduler]], client: Client, db_name: str, spans: Any
) -> None:
    [scheduler] = fleet([hourly("produce", "enqueue_one")], 1)
    await scheduler.start()
    run_id = await scheduler.run_now("produce")
    await async_wait_until(lambda: not scheduler._running, timeout=30)
    (run,) = named(spans, "run produce")
    assert attrs(run)["pulling_agent.run_id"] == run_id
    doc = await client[db_name]["work"].find_one({"from": run_id})
    assert doc is not None
    _, trace_id, span_id, _ = doc[TRACE]["traceparent"].split("-")
    (send,) = named(spans, "send work")
    assert (int(trace_id, 16), int(span_id, 16)) == (send.context.trace_id, send.context.span_id)
    assert send.parent is not None and send.parent.span_id == run.context.span_id
