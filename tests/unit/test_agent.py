"""The runtime over the in-memory store: lifecycle, control, retries, shutdown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from pulling_agent.control.requests import Source
from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.queue.model import ClaimKind
from pulling_agent.runtime.agent import Agent
from pulling_agent.runtime.handlers import HandlerRunner
from pulling_agent.runtime.health import LIVENESS, READINESS
from pulling_agent.runtime.state import AgentState
from pulling_agent.work import Context
from tests.conftest import async_wait_until, make_settings

Handler = Callable[[dict[str, Any]], Awaitable[None]]


async def noop(doc: dict[str, Any]) -> None:
    return None


def pending(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"status": "pending", "n": i, **fields} for i in range(n)]


class Running:
    """An agent running as a task, for one test."""

    def __init__(self, agent: Agent, task: asyncio.Task[int]) -> None:
        self.agent = agent
        self.task = task

    async def stop(self) -> int:
        self.agent.request_shutdown("test")
        return await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Running]]:
    started: list[Running] = []

    def _start(store: MemoryWorkStore, handler: Handler = noop, **overrides: Any) -> Running:
        threads = handler if isinstance(handler, HandlerRunner) else None
        agent = Agent(make_settings(tmp_path, **overrides), store, handler, threads=threads)
        running = Running(agent, asyncio.create_task(agent.run(install_signals=False)))
        started.append(running)
        return running

    yield _start
    for running in started:
        if not running.task.done():
            await running.stop()


class Gate:
    """A handler that signals when a document starts and holds it until opened."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self, doc: dict[str, Any]) -> None:
        self.started.set()
        await self.opened.wait()

    async def wait_started(self) -> None:
        await asyncio.wait_for(self.started.wait(), 10)


def statuses(store: MemoryWorkStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc in store.all():
        out[doc["status"]] = out.get(doc["status"], 0) + 1
    return out


def liveness_state(agent: Agent) -> str:
    return (agent.settings.health_dir / LIVENESS).read_text().splitlines()[0]


async def test_processes_every_document_once_and_records_processed_at(
    start: Callable[..., Running],
) -> None:
    calls: list[int] = []

    async def handler(doc: dict[str, Any]) -> None:
        calls.append(doc["n"])

    store = MemoryWorkStore(pending(95, payload="keep me"))
    run = start(store, handler)
    await async_wait_until(lambda: statuses(store) == {"processed": 95}, what="all processed")
    assert sorted(calls) == list(range(95))
    doc = store.all()[0]
    assert isinstance(doc["processed_at"], datetime)
    assert doc["payload"] == "keep me" and doc["attempts"] == 1 and "lease" not in doc
    assert await run.stop() == 0


async def test_backlog_is_claimed_in_batches_not_per_document(
    start: Callable[..., Running],
) -> None:
    store = MemoryWorkStore(pending(100))
    run = start(store, batch_size=50)
    await async_wait_until(lambda: statuses(store) == {"processed": 100})
    await run.stop()
    assert store.calls.count("claim") <= 6
    assert store.calls.count("complete") <= 8


async def test_failures_retry_then_dead_letter_and_nothing_is_lost(
    start: Callable[..., Running],
) -> None:
    async def handler(doc: dict[str, Any]) -> None:
        if doc["n"] == 0 or (doc["n"] == 1 and doc["attempts"] < 2):
            raise RuntimeError(f"bad {doc['n']}")

    store = MemoryWorkStore(pending(5))
    run = start(store, handler, max_attempts=3)
    await async_wait_until(lambda: statuses(store) == {"failed": 1, "processed": 4})
    await run.stop()
    poison, flaky = store.get(1), store.get(2)
    assert poison["attempts"] == 3
    assert poison["error"]["type"] == "RuntimeError" and poison["error"]["message"] == "bad 0"
    assert [e["attempt"] for e in poison["errors"]] == [1, 2, 3]
    assert isinstance(poison["failed_at"], datetime)
    assert flaky["status"] == "processed" and flaky["attempts"] == 2
    assert run.agent.pipeline.counters.retried == 3
    assert await store.requeue(None) == 1
    assert store.get(1)["status"] == "pending" and store.get(1)["attempts"] == 0


async def test_a_handler_that_hangs_is_timed_out(start: Callable[..., Running]) -> None:
    async def hang(doc: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    store = MemoryWorkStore(pending(1))
    runner = HandlerRunner(hang, 1, timeout=0.05)
    run = start(store, runner, max_attempts=1)
    await async_wait_until(lambda: statuses(store) == {"failed": 1})
    assert store.get(1)["error"]["type"] == "TimeoutError"
    await run.stop()


async def test_document_claimed_too_often_is_dead_lettered_without_running(
    start: Callable[..., Running],
) -> None:
    called: list[Any] = []

    async def handler(doc: dict[str, Any]) -> None:
        called.append(doc)

    expired = datetime.now(UTC) - timedelta(seconds=1)
    store = MemoryWorkStore(
        [{"status": "processing", "attempts": 3, "lease": {"token": "dead", "expires_at": expired}}]
    )
    run = start(store, handler, max_attempts=3)
    await async_wait_until(lambda: statuses(store) == {"failed": 1})
    await run.stop()
    assert called == []
    assert store.get(1)["error"]["type"] == "AttemptsExhausted"


async def test_pause_finishes_in_flight_then_claims_nothing_until_resume(
    start: Callable[..., Running],
) -> None:
    gate = Gate()
    store = MemoryWorkStore(pending(3))
    run = start(store, gate, batch_size=3)
    await gate.wait_started()
    run.agent.request_pause(Source.API, "test", "tester")
    assert run.agent.state is AgentState.PAUSING
    gate.opened.set()
    await async_wait_until(lambda: run.agent.state is AgentState.PAUSED)
    assert statuses(store) == {"processed": 3}, "in-flight work completes during a pause"
    claims_when_paused = store.calls.count("claim")
    store.insert(pending(4))
    for _ in range(50):  # let every task run many times over; nothing may claim
        run.agent.pipeline.kick.set()
        await asyncio.sleep(0)
    assert store.calls.count("claim") == claims_when_paused
    assert statuses(store) == {"processed": 3, "pending": 4}
    run.agent.request_resume(Source.API)
    await async_wait_until(lambda: statuses(store) == {"processed": 7})
    await run.stop()


async def test_standing_pause_in_control_file_is_honoured_before_first_claim(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    control = tmp_path / "control" / "state"
    control.parent.mkdir(parents=True)
    control.write_text("pause\n")
    store = MemoryWorkStore(pending(5))
    run = start(store)
    await async_wait_until(lambda: run.agent.state is AgentState.PAUSED)
    await async_wait_until(lambda: liveness_state(run.agent) == "paused")
    assert "claim" not in store.calls
    assert not (run.agent.settings.health_dir / READINESS).exists()
    control.write_text("running\n")
    await async_wait_until(lambda: statuses(store) == {"processed": 5})
    assert (run.agent.settings.health_dir / READINESS).exists()
    await run.stop()


async def test_an_unmeasured_server_clock_claims_nothing_until_it_is_known(
    start: Callable[..., Running],
) -> None:
    reason: list[str | None] = ["MongoDB's clock not measured yet"]
    store = MemoryWorkStore(pending(4))
    run = start(store)
    run.agent.clock_gate = lambda: reason[0]  # set before the agent's task first runs
    await async_wait_until(lambda: run.agent.state is AgentState.RUNNING, what="running")
    for _ in range(50):  # let every task run many times over; nothing may claim
        run.agent.pipeline.kick.set()
        await asyncio.sleep(0)
    assert "claim" not in store.calls
    assert statuses(store) == {"pending": 4}
    assert not run.agent.ready
    assert not (run.agent.settings.health_dir / READINESS).exists()
    reason[0] = None
    run.agent.pipeline.kick.set()
    await async_wait_until(lambda: statuses(store) == {"processed": 4}, what="claimed once known")
    assert run.agent.ready
    await run.stop()


async def test_control_file_swapped_like_kubelet_is_followed(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    """kubelet writes a new timestamped dir and renames the ``..data`` symlink over the old."""
    control_dir = tmp_path / "control"
    control_dir.mkdir()

    def publish(value: str, version: int) -> None:
        data = control_dir / f"..2026_01_01_00_00_0{version}.000"
        data.mkdir()
        (data / "state").write_text(value)
        tmp_link = control_dir / "..data_tmp"
        tmp_link.symlink_to(data.name)
        os.replace(tmp_link, control_dir / "..data")
        if not (control_dir / "state").is_symlink():
            (control_dir / "state").symlink_to("..data/state")

    publish("running", 1)
    store = MemoryWorkStore()
    run = start(store)
    await async_wait_until(lambda: run.agent.state is AgentState.RUNNING)
    publish("pause", 2)
    await async_wait_until(lambda: run.agent.state is AgentState.PAUSED, what="pause via swap")
    publish("resume", 3)
    await async_wait_until(lambda: run.agent.state is AgentState.RUNNING, what="resume via swap")
    await run.stop()


async def test_bad_control_values_are_logged_once_and_ignored(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    control = tmp_path / "control" / "state"
    control.parent.mkdir(parents=True)
    control.write_text("pause")
    run = start(MemoryWorkStore(), control_file_interval=3600)
    await async_wait_until(lambda: run.agent.state is AgentState.PAUSED)
    control.write_bytes(b"pasue\xff")
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):  # several reads of the same bad value
            run.agent.read_control_file()
        control.write_bytes(b"")
        run.agent.read_control_file()
    assert run.agent.state is AgentState.RUNNING, "an empty file withdraws the pause"
    ignored = [e for e in logs if e["event"].startswith("Ignoring control file value")]
    assert len(ignored) == 1
    assert ignored[0]["value"] == "pasue\ufffd"
    await run.stop()


async def test_signal_resume_does_not_override_control_file_pause(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    control = tmp_path / "control" / "state"
    control.parent.mkdir(parents=True)
    control.write_text("pause")
    run = start(MemoryWorkStore())
    await async_wait_until(lambda: run.agent.state is AgentState.PAUSED)
    run.agent.request_pause(Source.SIGNAL, "SIGUSR1", "signal")
    run.agent.request_resume(Source.SIGNAL)
    assert run.agent.state is AgentState.PAUSED
    assert [r.source for r in run.agent.pauses.holders()] == [Source.CONTROL_FILE]
    await async_wait_until(
        lambda: (
            "paused_by=control_file"
            in "".join((run.agent.settings.health_dir / LIVENESS).read_text())
        )
    )
    await run.stop()


async def test_shutdown_releases_unstarted_and_unfinished_leases(
    start: Callable[..., Running],
) -> None:
    gate = Gate()
    store = MemoryWorkStore(pending(10))
    run = start(store, gate, batch_size=10, concurrency=2, shutdown_timeout=0.1)
    await gate.wait_started()
    assert await run.stop() == 0
    docs = store.all()
    assert {d["status"] for d in docs} == {"pending"}
    assert all("lease" not in d for d in docs)
    attempts = sorted(d["attempts"] for d in docs)
    assert attempts == [0] * 8 + [1, 1], "unstarted claims are undone, cancelled ones count"
    assert not (run.agent.settings.health_dir / LIVENESS).exists()


async def test_second_shutdown_request_forces_exit_without_waiting(
    start: Callable[..., Running],
) -> None:
    gate = Gate()
    store = MemoryWorkStore(pending(1))
    run = start(store, gate, shutdown_timeout=3600)
    await gate.wait_started()
    run.agent.request_shutdown("first")
    await async_wait_until(lambda: run.agent.state is AgentState.STOPPING)
    run.agent.request_shutdown("second")
    assert await asyncio.wait_for(run.task, 10) == 1
    assert store.get(1)["status"] == "pending"


async def test_late_finisher_whose_lease_was_taken_over_changes_nothing(
    start: Callable[..., Running],
) -> None:
    gate = Gate()
    store = MemoryWorkStore(pending(1))
    run = start(store, gate, batch_size=1)
    await gate.wait_started()
    later = datetime.now(UTC) + timedelta(hours=1)  # the first lease has expired by then
    [takeover] = await store.claim("other", 1, 30, later, [ClaimKind.EXPIRED])
    gate.opened.set()
    await async_wait_until(lambda: run.agent.pipeline.counters.lost_leases == 1)
    doc = store.get(1)
    assert doc["status"] == "processing" and doc["lease"]["owner"] == "other"
    assert takeover.attempts == 2
    await run.stop()


async def test_health_files_track_state(start: Callable[..., Running]) -> None:
    run = start(MemoryWorkStore())
    health = run.agent.settings.health_dir
    await async_wait_until(lambda: (health / READINESS).exists())
    assert liveness_state(run.agent) == "running"
    run.agent.request_pause(Source.SIGNAL, "SIGUSR1", "signal")
    await async_wait_until(lambda: liveness_state(run.agent) == "paused")
    assert not (health / READINESS).exists()
    await run.stop()


async def test_leases_are_renewed_while_a_long_handler_runs(
    start: Callable[..., Running],
) -> None:
    """The handler outlives its first lease three times over; nobody may take it."""
    taken: list[Any] = []

    async def long_handler(doc: dict[str, Any]) -> None:
        for _ in range(6):
            await asyncio.sleep(0.5)  # the work itself: time must pass for leases to expire
            taken.extend(await store.claim("thief", 1, 30, datetime.now(UTC), [ClaimKind.EXPIRED]))

    store = MemoryWorkStore(pending(1))
    run = start(store, long_handler, lease_seconds=1)
    await async_wait_until(lambda: statuses(store) == {"processed": 1}, what="processed")
    assert taken == []
    assert run.agent.pipeline.counters.lost_leases == 0
    assert store.calls.count("renew") >= 3
    await run.stop()


async def test_a_handler_calling_sys_exit_fails_its_document_not_the_agent(
    start: Callable[..., Running],
) -> None:
    async def exits(doc: dict[str, Any]) -> None:
        if doc["n"] == 0:
            raise SystemExit(3)

    store = MemoryWorkStore(pending(3))
    run = start(store, exits, max_attempts=1)
    await async_wait_until(lambda: statuses(store) == {"failed": 1, "processed": 2})
    assert store.get(1)["error"]["type"] == "SystemExit"
    assert run.agent.state is AgentState.RUNNING
    assert await run.stop() == 0


async def test_liveness_is_rewritten_every_heartbeat_while_idle(
    start: Callable[..., Running],
) -> None:
    run = start(MemoryWorkStore())
    liveness = run.agent.settings.health_dir / LIVENESS

    def stamp() -> str:
        try:
            return liveness.read_text().splitlines()[1]
        except (FileNotFoundError, IndexError):
            return ""

    await async_wait_until(lambda: run.agent.state is AgentState.RUNNING)
    first = stamp()
    await async_wait_until(lambda: stamp() not in ("", first), what="a newer heartbeat")
    await run.stop()


class GatedClaims(MemoryWorkStore):
    """A store whose claims wait at a gate, to pause while one is in flight."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        super().__init__(documents)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        await self.gate.wait()
        return await super().claim(*args, **kwargs)


async def test_a_claim_in_flight_when_pausing_is_handed_back_not_processed(
    start: Callable[..., Running],
) -> None:
    called: list[Any] = []

    async def handler(doc: dict[str, Any]) -> None:
        called.append(doc)

    store = GatedClaims(pending(3))
    run = start(store, handler)
    await asyncio.wait_for(store.entered.wait(), 10)
    run.agent.request_pause(Source.API, "now", "tester")
    assert run.agent.state is AgentState.PAUSING, "not paused while a claim is in flight"
    store.gate.set()
    await async_wait_until(lambda: run.agent.state is AgentState.PAUSED)
    assert called == []
    assert [(d["status"], d["attempts"]) for d in store.all()] == [("pending", 0)] * 3
    await run.stop()


class SlowSweep(MemoryWorkStore):
    """A store whose sweep waits until the test lets it finish."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sweeping = asyncio.Event()
        self.finish_sweep = asyncio.Event()

    async def sweep(self, now: datetime) -> int:
        self.sweeping.set()
        await self.finish_sweep.wait()
        return await super().sweep(now)


async def test_a_pause_during_the_sweep_means_no_claim_after_it(
    start: Callable[..., Running],
) -> None:
    """Found by the fleet system test: the first sweep ran between the claimer's pause
    check and its claim, so an agent reported paused, then claimed a batch (and handed it
    back)."""
    store = SlowSweep()
    run = start(store, sweep_interval=0.05)
    await asyncio.wait_for(store.sweeping.wait(), 10)
    run.agent.request_pause(Source.API, "test", "tester")
    assert run.agent.state is AgentState.PAUSED
    claims_when_paused = store.calls.count("claim")
    store.insert(pending(5))
    store.finish_sweep.set()
    for _ in range(50):  # let every task run many times over; nothing may claim
        run.agent.pipeline.kick.set()
        await asyncio.sleep(0)
    assert store.calls.count("claim") == claims_when_paused
    assert statuses(store) == {"pending": 5}
    await run.stop()


async def test_progress_is_logged_at_a_steady_interval(start: Callable[..., Running]) -> None:
    store = MemoryWorkStore(pending(7))
    with structlog.testing.capture_logs() as logs:
        run = start(store, progress_interval=0.05)
        await async_wait_until(lambda: statuses(store) == {"processed": 7})
        await async_wait_until(
            lambda: len([e for e in logs if e.get("action") == "agent.progress"]) >= 3,
            what="progress lines",
        )
        await run.stop()
    lines = [e for e in logs if e.get("action") == "agent.progress"]
    assert sum(e["processed"] for e in lines) == 7, "each line counts what is new since the last"
    assert {"processed", "retried", "failed", "per_second", "backlog", "store"} <= set(lines[0])
    assert "backlog_counted_seconds_ago" in lines[0], "how old the backlog figure is"
    assert all(e["log_level"] == "info" for e in lines)


async def test_the_first_outcomes_are_said_at_once_not_a_progress_interval_later(
    start: Callable[..., Running],
) -> None:
    store = MemoryWorkStore(pending(3))
    with structlog.testing.capture_logs() as logs:
        run = start(store, progress_interval=3_600)  # the steady line would come in an hour
        await async_wait_until(
            lambda: any(e.get("action") == "agent.progress" for e in logs), what="a first line"
        )
        await async_wait_until(lambda: statuses(store) == {"processed": 3})
        for _ in range(3):  # more heartbeats: no second early line
            await asyncio.sleep(run.agent.settings.heartbeat_interval)
        await run.stop()
    lines = [e for e in logs if e.get("action") == "agent.progress"]
    assert len(lines) == 1 and lines[0]["processed"] >= 1


class SweepsOne(MemoryWorkStore):
    """A store whose every sweep fixes one document (as nx-27017's text dates make it)."""

    async def sweep(self, now: datetime) -> int:
        await super().sweep(now)
        return 1


@pytest.mark.parametrize(("interval", "level"), [(1.0, "debug"), (3.0, "info")])
async def test_a_development_servers_frequent_sweeps_are_not_said_at_info(
    start: Callable[..., Running], interval: float, level: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        run = start(SweepsOne(), sweep_interval=interval)
        await async_wait_until(
            lambda: any(e.get("action") == "queue.sweep" for e in logs), what="a sweep"
        )
        await run.stop()
    [sweep, *_] = [e for e in logs if e.get("action") == "queue.sweep"]
    assert sweep["log_level"] == level


class LosesFirstRace(MemoryWorkStore):
    """A store whose first fresh claim loses every candidate to another agent."""

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        if "claim" not in self.calls:
            self.calls.append("claim")
            self.lost_race = True
            return []
        return await super().claim(*args, **kwargs)


async def test_a_claim_lost_to_other_agents_is_retried_at_once_not_after_poll_interval(
    start: Callable[..., Running],
) -> None:
    store = LosesFirstRace(pending(3))
    run = start(store, poll_interval=3_600)
    await async_wait_until(lambda: statuses(store) == {"processed": 3}, what="the work done")
    assert run.agent.pipeline.counters.idle_waits == 0, "a lost race is not an idle queue"
    await run.stop()


async def test_a_then_job_reads_its_batch_and_the_agent_counts_it(
    start: Callable[..., Running],
) -> None:
    """Over the in-memory store: members, then the then job with ctx.batch; the agent's
    counters (exported to Prometheus) say a batch closed."""
    from pulling_agent.queue import workflow as wf

    seen: list[dict[str, Any] | None] = []

    async def handler(doc: dict[str, Any], ctx: Context) -> None:
        if doc.get("then"):
            seen.append(ctx.batch)
        elif doc.get("n") == 1:
            raise ValueError("one member fails")

    batch = {"id": "b1", "size": 3, "state": "sealed", "processed": 0, "failed": 0, "cancelled": 0}
    store = MemoryWorkStore(
        [
            {"_id": "then", "status": "waiting", "then": True, wf.BATCH: batch},
            *pending(3, batch_id="b1"),
        ]
    )
    run = start(store, handler, max_attempts=1)
    await async_wait_until(lambda: store.get("then")["status"] == "processed", what="then job")
    [summary] = seen
    assert summary is not None
    assert (summary["size"], summary["processed"], summary["failed"]) == (3, 2, 1)
    assert run.agent.pipeline.counters.batches_closed == 1
    await run.stop()


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_handlers_return_value_is_kept_in_result_and_a_bad_one_in_result_error(
    start: Callable[..., Running], sync: bool
) -> None:
    """Sync (in its thread) and async handlers alike: the value is stored with the
    outcome, an oversized or unencodable one is replaced by result_error, and the document
    is processed every time. The agent's secrets never reach a result."""
    secret = "mongodb://app:hunter2-secret@db.example/app"

    def answer(doc: dict[str, Any]) -> Any:
        return {
            0: {"file": f"export-{doc['n']}.csv", "echo": secret},
            1: "x" * 40_000,
            2: {"not": object()},
            3: None,
        }[doc["n"]]

    async def async_answer(doc: dict[str, Any]) -> Any:
        return answer(doc)

    handler = HandlerRunner(answer, 2, None) if sync else async_answer
    store = MemoryWorkStore(pending(4))
    run = start(store, handler, mongodb_uri=secret)
    await async_wait_until(lambda: statuses(store) == {"processed": 4}, what="all processed")
    by_n = {doc["n"]: doc for doc in store.all()}
    assert by_n[0]["result"] == {"file": "export-0.csv", "echo": "***"}
    assert "RESULT_MAX_BYTES=16,384" in by_n[1]["result_error"]
    assert "not BSON-encodable" in by_n[2]["result_error"]
    assert "result" not in by_n[3] and "result_error" not in by_n[3]
    assert await run.stop() == 0


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_a_then_job_reads_its_members_results_page_by_page(
    start: Callable[..., Running], sync: bool
) -> None:
    members: list[dict[str, Any]] = [
        {"_id": f"m{n}", "status": "processed", "batch_id": "b1", "result": {"rows": n}}
        for n in range(7)
    ]
    members.append({"_id": "m7", "status": "failed", "batch_id": "b1", "error": {"type": "E"}})
    members.append({"_id": "other", "status": "processed", "batch_id": "b2", "result": 1})
    batch = {"id": "b1", "size": 8, "state": "closed", "processed": 7, "failed": 1}
    then = {"_id": "then", "status": "pending", "batch": batch}

    def summing(doc: dict[str, Any], ctx: Context) -> Any:
        seen = list(ctx.members(page=3))
        return {
            "rows": sum(m.get("result", {}).get("rows", 0) for m in seen),
            "failed": [m["_id"] for m in seen if m["status"] == "failed"],
            "fields": sorted({f for m in seen for f in m}),
        }

    async def async_summing(doc: dict[str, Any], ctx: Context) -> Any:
        with pytest.raises(RuntimeError, match="async for"):
            list(ctx.members())
        seen = [m async for m in ctx.members(page=3)]
        return {
            "rows": sum(m.get("result", {}).get("rows", 0) for m in seen),
            "failed": [m["_id"] for m in seen if m["status"] == "failed"],
            "fields": sorted({f for m in seen for f in m}),
        }

    store = MemoryWorkStore([*members, then])
    run = start(store, HandlerRunner(summing, 1, None) if sync else async_summing)
    await async_wait_until(
        lambda: store.get("then")["status"] == "processed", what="then job processed"
    )
    assert store.get("then")["result"] == {
        "rows": 21,
        "failed": ["m7"],
        "fields": ["_id", "error", "result", "status"],
    }
    assert await run.stop() == 0
