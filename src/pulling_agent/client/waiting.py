"""Waiting for a document's outcome: its ``result``, or the error it ended with.

    from pulling_agent.client import enqueue, wait

    job = enqueue(work, {"report": "2026-12"}, type="export")
    wait(work, job.id, timeout=30)      # or job.result(timeout=30); asyncio: await ...

returns the handler's return value once the document is ``processed`` (``None`` when it
returned nothing), and raises :class:`JobFailed` (``failed``: its ``error``),
:class:`JobCancelled` (``cancel_reason``), :class:`ResultNotStored` (processed, but its
value was too large or not encodable: ``result_error``), :class:`JobNotFound` (no such
document: a wrong id, or deleted by retention), or :class:`WaitTimeout` (a
``TimeoutError``) when ``timeout`` seconds pass first. A retry in between is not an end:
the wait goes on through every attempt.

How: by change stream where the server offers one (a replica set; ``change_stream=None``
decides by ``hello``, as the agents do), opened *before* the first read, so an outcome
written between the two is not missed; otherwise by polling the document with backoff,
from :data:`FIRST_POLL` up to ``poll_max`` seconds between reads (one ``find`` each, by
``_id``), never a busy loop (nor through a stream whose server answers at once: at most
one read of it per :data:`STREAM_FLOOR`). A stream that fails falls back to polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from pulling_agent.errors import PullingAgentError
from pulling_agent.queue.database import offers_change_streams
from pulling_agent.queue.model import Status
from pulling_agent.queue.results import OUTCOME_FIELDS, RESULT, RESULT_ERROR
from pulling_agent.text import safe_text

FIRST_POLL = 0.05  # seconds before the second read
BACKOFF = 1.5
POLL_MAX = 1.0
# the least time between two reads of a change stream: a server that answers a getMore at
# once instead of waiting up to max_await_time_ms (nx-27017) must not make a busy loop
STREAM_FLOOR = 0.05
PROJECTION = OUTCOME_FIELDS


class WaitError(PullingAgentError):
    """The document did not end with a result. ``doc_id``: which one."""

    def __init__(self, message: str, doc_id: Any) -> None:
        super().__init__(message)
        self.doc_id = doc_id


class JobFailed(WaitError):
    """The document is ``failed`` (the dead letter). ``error``: its error sub-document."""

    def __init__(self, message: str, doc_id: Any, error: Mapping[str, Any]) -> None:
        super().__init__(message, doc_id)
        self.error = dict(error)


class JobCancelled(WaitError):
    """The document is ``cancelled``. ``reason``: its ``cancel_reason``."""

    def __init__(self, message: str, doc_id: Any, reason: str) -> None:
        super().__init__(message, doc_id)
        self.reason = reason


class ResultNotStored(WaitError):
    """The document was processed, but its handler's value was not stored (too large or
    not encodable). ``reason``: its ``result_error``."""

    def __init__(self, message: str, doc_id: Any, reason: str) -> None:
        super().__init__(message, doc_id)
        self.reason = reason


class JobNotFound(WaitError):
    """No document has this ``_id`` (a wrong id, or deleted by retention)."""


class WaitTimeout(WaitError, TimeoutError):
    """``timeout`` seconds passed before the document ended. ``status``: as last read."""

    def __init__(self, message: str, doc_id: Any, status: str) -> None:
        super().__init__(message, doc_id)
        self.status = status


class _Pending:
    """Not ended yet, as last read."""

    def __init__(self, status: str) -> None:
        self.status = status


def outcome(doc: Mapping[str, Any] | None, doc_id: Any) -> Any:
    """The result of an ended document, or :class:`_Pending`; raises for the other ends."""
    shown = safe_text(doc_id, 100)
    if doc is None:
        raise JobNotFound(f"no document has the _id {shown}", doc_id)
    status = doc.get("status")
    if status == Status.PROCESSED.value:
        if RESULT_ERROR in doc and RESULT not in doc:
            reason = safe_text(doc[RESULT_ERROR], 500)
            raise ResultNotStored(f"{shown} was processed; its result: {reason}", doc_id, reason)
        return doc.get(RESULT)
    if status == Status.FAILED.value:
        recorded = doc.get("error")
        error: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}
        said = (
            f"{safe_text(error.get('type', ''), 100)}: {safe_text(error.get('message', ''), 400)}"
        )
        raise JobFailed(f"{shown} failed ({said})", doc_id, error)
    if status == Status.CANCELLED.value:
        reason = safe_text(doc.get("cancel_reason") or "", 400)
        raise JobCancelled(f"{shown} was cancelled ({reason})", doc_id, reason)
    return _Pending(safe_text(status, 40))


def _timed_out(doc_id: Any, timeout: float, status: str) -> WaitTimeout:
    shown = safe_text(doc_id, 100)
    return WaitTimeout(f"{shown} still {status} after {timeout:g} s", doc_id, status)


def _checked(timeout: float, poll_max: float) -> None:
    if not (isinstance(timeout, int | float) and timeout >= 0) or isinstance(timeout, bool):
        raise ValueError(f"timeout must be seconds, 0 or more (got {timeout!r})")
    if not (isinstance(poll_max, int | float) and poll_max > 0):
        raise ValueError(f"poll_max must be a positive number of seconds (got {poll_max!r})")


def _stream_pipeline(doc_id: Any) -> list[dict[str, Any]]:
    return [{"$match": {"documentKey._id": doc_id}}]


def wait(
    collection: Collection[Any],
    doc_id: Any,
    timeout: float = 60.0,
    *,
    change_stream: bool | None = None,
    poll_max: float = POLL_MAX,
) -> Any:
    """Block until ``doc_id`` ends; its result (see the module's docstring)."""
    _checked(timeout, poll_max)
    deadline = time.monotonic() + timeout
    use_stream = _sync_streams(collection) if change_stream is None else change_stream
    if use_stream:
        try:
            with collection.watch(_stream_pipeline(doc_id), max_await_time_ms=200) as stream:
                while True:
                    found = outcome(collection.find_one({"_id": doc_id}, PROJECTION), doc_id)
                    if not isinstance(found, _Pending):
                        return found
                    while True:
                        asked = time.monotonic()
                        if stream.try_next() is not None:
                            break
                        now = time.monotonic()
                        if now >= deadline:
                            raise _timed_out(doc_id, timeout, found.status)
                        time.sleep(max(0.0, min(asked + STREAM_FLOOR, deadline) - now))
        except PyMongoError:
            pass  # no stream after all: poll for the time that is left
    pause = FIRST_POLL
    while True:
        found = outcome(collection.find_one({"_id": doc_id}, PROJECTION), doc_id)
        if not isinstance(found, _Pending):
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(doc_id, timeout, found.status)
        time.sleep(min(pause, left))
        pause = min(pause * BACKOFF, poll_max)


async def wait_async(
    collection: AsyncCollection[Any],
    doc_id: Any,
    timeout: float = 60.0,  # noqa: ASYNC109 - the same call as the sync wait (the issue's API)
    *,
    change_stream: bool | None = None,
    poll_max: float = POLL_MAX,
) -> Any:
    """:func:`wait` for the asyncio driver (``pulling_agent.client.aio.wait``)."""
    _checked(timeout, poll_max)
    deadline = time.monotonic() + timeout
    use_stream = await _async_streams(collection) if change_stream is None else change_stream
    status = "unknown"
    if use_stream:
        try:
            pipeline = _stream_pipeline(doc_id)
            async with await collection.watch(pipeline, max_await_time_ms=200) as stream:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    while True:
                        doc = await collection.find_one({"_id": doc_id}, PROJECTION)
                        found = outcome(doc, doc_id)
                        if not isinstance(found, _Pending):
                            return found
                        status = found.status
                        while True:
                            asked = time.monotonic()
                            if await stream.try_next() is not None:
                                break
                            spent = time.monotonic() - asked
                            await asyncio.sleep(max(0.0, STREAM_FLOOR - spent))
        except TimeoutError:
            raise _timed_out(doc_id, timeout, status) from None
        except PyMongoError:
            pass  # no stream after all: poll for the time that is left
    pause = FIRST_POLL
    while True:
        found = outcome(await collection.find_one({"_id": doc_id}, PROJECTION), doc_id)
        if not isinstance(found, _Pending):
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(doc_id, timeout, found.status)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * BACKOFF, poll_max)


def _sync_streams(collection: Collection[Any]) -> bool:
    try:
        hello = collection.database.client.admin.command("hello")
    except PyMongoError:
        return False
    return offers_change_streams(hello)


async def _async_streams(collection: AsyncCollection[Any]) -> bool:
    try:
        hello = await collection.database.client.admin.command("hello")
    except PyMongoError:
        return False
    return offers_change_streams(hello)
