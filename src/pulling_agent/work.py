"""What a handler sees and what it may say: the context of one attempt, and explicit
outcomes.

A handler may take a second parameter, the :class:`Context` (detected from its signature;
one-parameter handlers keep working)::

    from pulling_agent import Context, Fail, Retry, Skip

    async def handle(document: dict, ctx: Context) -> None:
        if not document.get("to"):
            raise Skip("no recipient")                 # final status: cancelled
        if quota_exhausted():
            raise Retry(after=300)                     # again in 5 minutes; not a failure
        await send(document, idempotency_key=ctx.idempotency_key)
        ctx.set_progress({"sent": True})

Raising anything else keeps the usual rules: retry with backoff, dead letter after
``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import encode
from bson.errors import InvalidDocument

from pulling_agent.text import safe_text

PROGRESS_MAX_BYTES = 1_024  # BSON bytes: a progress value is a small status, not a result store


class Outcome(Exception):
    """Base of the explicit outcomes a handler may raise."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = safe_text(reason, 2_000)


class Retry(Outcome):
    """Run this document again later, at a time of the handler's choosing.

    ``after``: seconds (or a ``timedelta``) from now, or a ``datetime`` (when); ``None``
    means now. The attempt is not counted (``attempts`` is not consumed) and nothing is
    added to the error history unless ``record=True``. A handler that always raises
    ``Retry`` retries for ever: that is its decision."""

    def __init__(
        self,
        after: float | timedelta | datetime | None = None,
        reason: str = "",
        *,
        record: bool = False,
    ) -> None:
        super().__init__(reason)
        self.after = after
        self.record = record

    def due(self, now: datetime) -> datetime:
        after = self.after
        if after is None:
            return now
        if isinstance(after, datetime):
            return after
        seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
        return now + timedelta(seconds=max(0.0, seconds))


class Fail(Outcome):
    """Straight to the dead letter (``status: failed``), no more attempts."""


class Skip(Outcome):
    """Nothing to do for this document: final status ``cancelled``, kept and listable."""


class Cancel(Skip):
    """The same outcome as :class:`Skip`, for handlers that see it as a cancellation."""


def _unstorable(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` cannot be a field value in an update (keys MongoDB refuses), or None."""
    if depth > 20:
        return "is nested too deeply"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("$") or "." in key:
                return f"has the key {safe_text(key, 40)!r} (keys: strings without '$' or '.')"
            problem = _unstorable(item, depth + 1)
            if problem is not None:
                return problem
    elif isinstance(value, list | tuple):
        for item in value:
            problem = _unstorable(item, depth + 1)
            if problem is not None:
                return problem
    return None


def accepts_context(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` takes a second positional parameter (the :class:`Context`)."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 2


def idempotency_key(namespace: str, doc_id: Any) -> str:
    """Stable for one document across attempts and agents: hex of SHA-256 over the
    collection's namespace and the BSON ``_id``."""
    digest = hashlib.sha256(namespace.encode() + b"\0" + encode({"_id": doc_id}))
    return digest.hexdigest()[:32]


@dataclass(kw_only=True, eq=False)
class Context:
    """One attempt at one document, for a handler that asks for it."""

    doc_id: Any
    attempt: int
    max_attempts: int
    agent_id: str
    lease_token: str
    deadline: datetime | None
    """When ``HANDLER_TIMEOUT`` runs out (None without one: the lease is renewed while the
    handler runs, so it never runs out under a live agent)."""
    namespace: str  # database.collection, for the idempotency key
    make_log: Callable[[], Any] = field(repr=False)
    batch: dict[str, Any] | None = None
    """For a batch's then job (``enqueue_many(..., then=job)``): the batch's summary, e.g.
    ``{"id": ..., "size": 50000, "processed": 49990, "failed": 8, "cancelled": 2,
    "missing": 0}``, the same as the document's ``batch`` field. None otherwise."""
    read_members: Callable[[int], AsyncIterator[Any]] | None = field(default=None, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    cancelled: bool = False
    """Set when someone cancelled this document (``pulling-agent cancel``). An async
    handler is cancelled at its next ``await``; a sync one should check this and return:
    the document is recorded ``cancelled`` either way."""
    progress_dirty: bool = field(default=False, init=False)
    _progress: Any = field(default=None, init=False, repr=False)
    _log: Any = field(default=None, init=False, repr=False)

    @property
    def idempotency_key(self) -> str:
        """Stable per document (across attempts and agents): use it as the idempotency key
        of downstream calls (payments, emails) so a retried document does not act twice."""
        return idempotency_key(self.namespace, self.doc_id)

    @property
    def log(self) -> Any:
        """A structlog logger bound to this document and attempt."""
        if self._log is None:
            self._log = self.make_log()
        return self._log

    def set_progress(self, value: Any) -> None:
        """Store a small progress value on the document, written with the next lease
        renewal (no extra round trip per call; the latest value wins). Raises
        ``ValueError`` at once for a value MongoDB could not store (a set, an int beyond
        64 bits, a non-string or ``$``/``.`` key...) or over 1 KB as BSON, rather than
        failing the renewal later."""
        problem = _unstorable(value)
        if problem is None:
            try:
                size = len(encode({"progress": value}))
            except (InvalidDocument, OverflowError, TypeError, ValueError) as exc:
                problem = f"cannot be stored ({safe_text(exc, 200)})"
            else:
                if size > PROGRESS_MAX_BYTES:
                    problem = f"is {size} bytes as BSON; keep it under {PROGRESS_MAX_BYTES}"
        if problem is not None:
            raise ValueError(f"progress {problem}")
        self._progress = value
        self.progress_dirty = True

    def members(self, page: int = 500) -> Members:
        """For a batch's then job: its members with their outcomes, one dictionary each
        (``_id``, ``status``, ``result`` or ``result_error``, ``error``, ``cancel_reason``),
        read ``page`` at a time (a 100,000-member batch is never in memory at once).
        ``async for m in ctx.members()`` in an async handler, ``for m in ctx.members()`` in
        a sync one. ``ValueError`` outside a then job."""
        if self.read_members is None or self.loop is None:
            raise ValueError("ctx.members() is for a batch's then job (enqueue_many(then=...))")
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= 10_000:
            raise ValueError("page must be a whole number from 1 to 10,000")
        return Members(self.read_members(page), self.loop)

    async def progress(self, value: Any) -> None:
        """:meth:`set_progress`, for ``await ctx.progress(...)`` in async handlers."""
        self.set_progress(value)

    def take_progress(self) -> tuple[bool, Any]:
        """For the agent: the value to write, if it changed since the last write."""
        dirty, self.progress_dirty = self.progress_dirty, False
        return dirty, self._progress


class Members:
    """A then job's members, read page by page from the store (:meth:`Context.members`)."""

    def __init__(self, source: AsyncIterator[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._source

    def __iter__(self) -> Iterator[Any]:
        """From a sync handler's thread: each read runs on the agent's event loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("in an async handler, use 'async for m in ctx.members()'")
        while True:
            try:
                yield asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            except StopAsyncIteration:
                return

    async def _next(self) -> Any:
        return await anext(self._source)
