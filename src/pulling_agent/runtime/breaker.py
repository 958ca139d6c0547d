"""Whether the store answers: the seed's circuit breaker, as the agent's readiness sees it.

Every store call the pipeline makes goes through :meth:`StoreBreaker.call`. The store is
*unavailable* once no round trip has succeeded for ``STORE_OUTAGE_SECONDS`` while calls
failed or hung; then readiness drops, claiming stops, and one probe at a time tests the
store (half-open); the first success restores everything. Liveness is not affected: the
process is fine, the database is not.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo.errors import PyMongoError

from pulling_agent.logs import get_logger
from pulling_agent.queue.database import describe_error

T = TypeVar("T")


class StoreBreaker:
    def __init__(
        self,
        outage_after: float,
        on_change: Callable[[], None],
        agent_id: str = "",
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._outage_after = outage_after
        self._on_change = on_change
        self._monotonic = monotonic
        self._wall = wall
        self._log = get_logger(agent_id=agent_id, component="store")
        self._last_success = monotonic()
        self._troubled_since: float | None = None  # first failure since the last success
        self._calls: dict[int, float] = {}  # in-flight call -> start
        self._next_call = 0
        self.available = True
        self.since: datetime | None = None
        self.last_error = ""

    async def call(self, work: Awaitable[T]) -> T:
        """Await one store call and record how it went (a PyMongoError is re-raised)."""
        key, self._next_call = self._next_call, self._next_call + 1
        self._calls[key] = self._monotonic()
        try:
            result = await work
        except PyMongoError as exc:
            self.failed(exc)
            raise
        finally:
            self._calls.pop(key, None)
        self.succeeded()
        return result

    def succeeded(self) -> None:
        self._last_success = self._monotonic()
        self._troubled_since = None
        if not self.available:
            outage = (self._wall() - self.since).total_seconds() if self.since else 0.0
            self.available, self.since, self.last_error = True, None, ""
            self._log.info(
                "MongoDB answers again; claiming resumes",
                action="store.available",
                outage_seconds=round(outage, 1),
            )
            self._on_change()

    def failed(self, exc: BaseException) -> None:
        self.last_error = describe_error(exc)
        if self._troubled_since is None:
            self._troubled_since = self._monotonic()
        self.evaluate()

    def evaluate(self) -> None:
        """Open the breaker if the store has not answered for too long (failing calls,
        or a call hanging); called after each failure and at every heartbeat."""
        if not self.available:
            return
        now = self._monotonic()
        oldest_call = min(self._calls.values(), default=None)
        troubled = self._troubled_since is not None or (
            oldest_call is not None and now - oldest_call >= self._outage_after
        )
        if troubled and now - self._last_success >= self._outage_after:
            self.available, self.since = False, self._wall()
            if not self.last_error:
                self.last_error = f"no answer for {now - self._last_success:.0f}s"
            self._log.error(
                "MongoDB unavailable: readiness dropped, claiming stopped until it answers",
                action="store.unavailable",
                error=self.last_error,
                seconds_without_answer=round(now - self._last_success, 1),
            )
            self._on_change()

    def as_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "since": self.since.isoformat() if self.since else None,
            "last_error": self.last_error,
        }

    def summary(self) -> str:
        """One line for the health file."""
        if self.available:
            return "ok"
        since = self.since.isoformat(timespec="seconds") if self.since else "?"
        return f"unavailable since {since} ({self.last_error})"
