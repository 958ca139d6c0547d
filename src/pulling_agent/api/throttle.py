"""Failed authentication, per client: counted, logged (rate-limited), and slowed down.

A wrong bearer token or a wrong sign-in token is a guess. After ``LIMIT`` failed attempts
from one client within ``WINDOW`` seconds, every authenticated request from that client is
answered 429 (``Retry-After``) for a back-off that starts at ``FIRST_BACKOFF`` seconds and
doubles with each further failure up to ``MAX_BACKOFF``; a right token during the back-off
is refused too, or the answer would say which guess was right. A client is its address
as the server sees it (behind a proxy: the proxy's, so one guessing client can hold off the
others behind it for at most ``MAX_BACKOFF`` seconds at a time; X-Forwarded-For is not
trusted, anyone can write it). At most ``MAX_CLIENTS`` clients are remembered, the least
recent dropped first, so a flood from many addresses costs bounded memory. Each client's
failures are logged at most once per ``LOG_EVERY`` seconds (with the count since the last
line), and counted in ``pulling_agent_auth_failures_total{kind}``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pulling_agent.logs import get_logger
from pulling_agent.text import safe_text

LIMIT = 10
WINDOW = 60.0
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
MAX_CLIENTS = 10_000
LOG_EVERY = 60.0


@dataclass(slots=True)
class _Client:
    failures: list[float]  # times of the failures within the window
    blocked_until: float = 0.0
    backoff: float = 0.0
    logged_at: float = float("-inf")
    unlogged: int = 0


class FailedAuth:
    def __init__(
        self,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``on_failure(kind)`` for each failure (the metric): kind is ``token`` or
        ``sign_in``."""
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._on_failure = on_failure
        self._clock = clock
        self._log = get_logger(component="auth")

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may authenticate again (0: now)."""
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        return max(0.0, entry.blocked_until - self._clock())

    def failed(self, client: str, kind: str) -> None:
        """Record a failed attempt by ``client``."""
        now = self._clock()
        entry = self._clients.pop(client, None) or _Client([])
        self._clients[client] = entry  # the most recent last
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        recent = [t for t in entry.failures if now - t < WINDOW][-LIMIT:]
        entry.failures = [*recent, now]
        if len(entry.failures) > LIMIT:
            entry.backoff = min(MAX_BACKOFF, entry.backoff * 2 or FIRST_BACKOFF)
            entry.blocked_until = now + entry.backoff
        entry.unlogged += 1
        if now - entry.logged_at >= LOG_EVERY:
            self._log.warning(
                "authentication failed",
                action="auth.failed",
                client=safe_text(client, 100),
                kind=kind,
                failures=entry.unlogged,
                blocked_for=round(max(0.0, entry.blocked_until - now), 1),
            )
            entry.logged_at, entry.unlogged = now, 0
        if self._on_failure is not None:
            self._on_failure(kind)
