"""Waiting for a result over the wire (client.waiting): the value once processed, the error
for the other ends, through retries, by polling with backoff and by change stream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import monitoring

from pulling_agent.client import (
    JobCancelled,
    JobFailed,
    JobNotFound,
    ResultNotStored,
    WaitTimeout,
    aio,
    enqueue,
    wait,
)
from tests.deviations import CHANGE_STREAM_OBJECTID_MATCH, nx_deviation
from tests.integration.conftest import alistened, listened

PROCESSED = {"$set": {"status": "processed", "result": {"file": "export.csv"}}}


class Reads(monitoring.CommandListener):
    """Counts the finds a waiter sends; ``first`` is set at its first."""

    def __init__(self) -> None:
        self.finds = 0
        self.get_mores = 0
        self.first = threading.Event()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.get_mores += event.command_name == "getMore"
        if event.command_name == "find":
            self.finds += 1
            self.first.set()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


@pytest.fixture
def waiter(mongo_uri: str, db_name: str) -> Iterator[tuple[Any, Reads]]:
    reads = Reads()
    with listened(mongo_uri, db_name, reads) as collection:
        yield collection, reads


@pytest.fixture
async def awaiter(mongo_uri: str, db_name: str) -> AsyncIterator[tuple[Any, Reads]]:
    reads = Reads()
    async with alistened(mongo_uri, db_name, reads) as collection:
        yield collection, reads


def _after_first_read(reads: Reads, work: Any, doc_id: Any, *updates: dict[str, Any]) -> Any:
    """A writer (an agent's outcome, as the store writes it) that acts once the waiter has
    looked: the wait must notice a change made while it waits."""

    def write() -> None:
        assert reads.first.wait(10), "the waiter never read"
        for update in updates:
            work.update_one({"_id": doc_id}, update)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@pytest.mark.parametrize("stream", [False, True], ids=["polling", "change-stream"])
def test_wait_returns_the_result_written_while_it_waits(
    work: Any, waiter: tuple[Any, Reads], stream: bool
) -> None:
    """A failed attempt and its retry in between are not an end. (A string _id: see
    test_a_change_stream_wait_matches_an_objectid for ObjectIds.)"""
    job = enqueue(work, {"_id": "report-2026-12"})
    work.update_one({"_id": job.id}, {"$set": {"status": "processing"}})
    collection, reads = waiter
    retry = {"$set": {"status": "pending", "attempts": 1, "error": {"type": "Flaky"}}}
    again = {"$set": {"status": "processing", "attempts": 2}}
    writer = _after_first_read(reads, work, job.id, retry, again, PROCESSED)
    assert wait(collection, job.id, timeout=30, change_stream=stream) == {"file": "export.csv"}
    writer.join(10)
    if stream:
        assert reads.finds <= 4, "one read, then one per change"


def test_each_end_raises_with_what_the_document_says(work: Any) -> None:
    failed = work.insert_one(
        {"status": "failed", "error": {"type": "ValueError", "message": "bad \x1b[2J row"}}
    ).inserted_id
    with pytest.raises(JobFailed, match="ValueError: bad") as raised:
        wait(work, failed, timeout=5)
    assert raised.value.error["type"] == "ValueError" and raised.value.doc_id == failed
    cancelled = work.insert_one({"status": "cancelled", "cancel_reason": "by ops"}).inserted_id
    with pytest.raises(JobCancelled, match="by ops"):
        wait(work, cancelled, timeout=5)
    big = work.insert_one({"status": "processed", "result_error": "too big"}).inserted_id
    with pytest.raises(ResultNotStored, match="too big"):
        wait(work, big, timeout=5)
    nothing = work.insert_one({"status": "processed"}).inserted_id
    assert wait(work, nothing, timeout=5) is None, "a handler that returned nothing"
    with pytest.raises(JobNotFound):
        wait(work, "no-such-id", timeout=5)
    hostile = work.insert_one({"status": "failed", "error": ["not", "a", "mapping"]}).inserted_id
    with pytest.raises(JobFailed):
        wait(work, hostile, timeout=5)


def test_a_wait_times_out_polling_with_backoff_not_in_a_busy_loop(
    work: Any, waiter: tuple[Any, Reads]
) -> None:
    job = enqueue(work, {"n": 1})
    collection, reads = waiter
    with pytest.raises(WaitTimeout, match="still pending") as raised:
        wait(collection, job.id, timeout=1.0, poll_max=0.5)
    assert isinstance(raised.value, TimeoutError) and raised.value.status == "pending"
    # reads at 0, 0.05, 0.125, 0.24, 0.41, 0.66, then every 0.5 s: at most 8 in 1 s
    assert 2 <= reads.finds <= 8
    with pytest.raises(ValueError, match="timeout"):
        wait(collection, job.id, timeout=-1)


def test_enqueued_result_waits_for_its_own_document(work: Any, waiter: tuple[Any, Reads]) -> None:
    collection, reads = waiter
    job = enqueue(collection, {"n": 1}, key="job-1")
    again = enqueue(collection, {"n": 1}, key="job-1")
    writer = _after_first_read(reads, work, job.id, PROCESSED)
    assert again.result(timeout=30) == {"file": "export.csv"}, "a duplicate waits for the first"
    writer.join(10)


@pytest.mark.parametrize("stream", [False, True], ids=["polling", "change-stream"])
async def test_the_async_wait_returns_the_result_and_times_out(
    work: Any, awaiter: tuple[Any, Reads], stream: bool
) -> None:
    collection, reads = awaiter
    job = await aio.enqueue(collection, {"_id": "job-1"})
    writer = _after_first_read(reads, work, job.id, PROCESSED)
    assert await job.result(timeout=30, change_stream=stream) == {"file": "export.csv"}
    writer.join(10)
    other = await aio.enqueue(collection, {"_id": "job-2"})
    with pytest.raises(WaitTimeout):
        await aio.wait(collection, other.id, timeout=0.3, change_stream=stream)
    work.update_one({"_id": other.id}, {"$set": {"status": "failed", "error": {"type": "X"}}})
    with pytest.raises(JobFailed):
        await aio.wait(collection, other.id, timeout=5, change_stream=stream)


async def test_a_cancelled_async_wait_leaves_nothing_running(
    work: Any, awaiter: tuple[Any, Reads]
) -> None:
    collection, _ = awaiter
    job = await aio.enqueue(collection, {"n": 1})
    task = asyncio.create_task(aio.wait(collection, job.id, timeout=30, change_stream=True))
    await asyncio.sleep(0)  # let it start; the cancellation must reach it mid-wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert work.find_one({"_id": job.id})["status"] == "pending"


@nx_deviation(CHANGE_STREAM_OBJECTID_MATCH)
def test_a_change_stream_wait_matches_an_objectid(work: Any, waiter: tuple[Any, Reads]) -> None:
    """The usual _id. The stream filters on the server (documentKey._id), so a waiter gets
    only its own document's changes, not the collection's; poll_max is long, so only the
    stream can end this wait in time."""
    job = enqueue(work, {"n": 1})
    collection, reads = waiter
    writer = _after_first_read(reads, work, job.id, PROCESSED)
    try:
        found = wait(collection, job.id, timeout=3, change_stream=True, poll_max=60)
    finally:
        writer.join(10)
    assert found == {"file": "export.csv"}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_change_stream_wait_never_spins(
    work: Any, waiter: tuple[Any, Reads], awaiter: tuple[Any, Reads], kind: str
) -> None:
    """nx-27017 answers a stream's getMore at once (it ignores max_await_time_ms): the wait
    still reads the stream at most once per STREAM_FLOOR (50 ms), ~20 in a second; MongoDB
    waits 200 ms per getMore (~5)."""
    work.insert_one({"_id": "idle", "status": "pending"})
    collection, reads = waiter if kind == "sync" else awaiter
    waiting = (
        asyncio.to_thread(wait, collection, "idle", 1.0, change_stream=True)
        if kind == "sync"
        else aio.wait(collection, "idle", 1.0, change_stream=True)
    )
    with pytest.raises(WaitTimeout):
        await waiting
    assert 1 <= reads.get_mores <= 30
