"""A Python registry of handlers by type: the job factory in code instead of ``HANDLERS``.

    # myapp/jobs.py
    from pulling_agent import Worker

    worker = Worker()

    @worker.handler("email")
    async def send_email(document, ctx): ...

    @worker.handler("invoice", concurrency=2)
    def invoice(document): ...

    @worker.handler()            # documents without a type
    def other(document): ...

    @worker.handler("export", fleet_concurrency=3, key_concurrency=1)
    async def export(document, ctx): ...   # 3 at once in the fleet, 1 per CONCURRENCY_KEY value

Run it with ``HANDLERS=myapp.jobs:worker``: the agent claims only the types registered
(in the claim query), exactly as with ``HANDLERS=email=…,invoice=…``. ``TYPE_CONCURRENCY``,
``TYPE_RATE_LIMIT``, ``TYPE_FLEET_CONCURRENCY`` and ``TYPE_KEY_CONCURRENCY`` from the
environment apply too (and win over ``concurrency=``, ``fleet_concurrency=`` and
``key_concurrency=``). Fleet-wide limits hold only when every agent is given the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pulling_agent.config import MAX_SLOTS

F = TypeVar("F", bound=Callable[..., Any])
MAX_TYPE_CHARS = 200


class Worker:
    def __init__(self) -> None:
        self.handlers: dict[str | None, Callable[..., Any]] = {}
        self.concurrency: dict[str, int] = {}
        self.fleet_concurrency: dict[str, int] = {}
        self.key_concurrency: dict[str, int] = {}

    def handler(
        self,
        type: str | None = None,
        *,
        concurrency: int | None = None,
        fleet_concurrency: int | None = None,
        key_concurrency: int | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function for documents whose type field is ``type``
        (``None``: documents without one). ``concurrency``: at most this many at once on
        this agent; ``fleet_concurrency``: across the fleet (0: none runs);
        ``key_concurrency``: across the fleet per value of ``CONCURRENCY_KEY``."""
        if type is not None and (
            not isinstance(type, str)
            or not type.strip()
            or len(type) > MAX_TYPE_CHARS
            or "," in type
            or "=" in type
        ):
            raise ValueError(
                f"handler type {type!r}: use a non-empty string of at most "
                f"{MAX_TYPE_CHARS} characters without ',' or '='"
            )
        if type in self.handlers:
            raise ValueError(f"a handler for type {type!r} is registered already")
        if concurrency is not None:
            if type is None:
                raise ValueError("concurrency= needs a type (CONCURRENCY limits the rest)")
            _count("concurrency", type, concurrency, 1, 1_000)
        for name, value, least in (
            ("fleet_concurrency", fleet_concurrency, 0),
            ("key_concurrency", key_concurrency, 1),
        ):
            if value is not None:
                if type is None:
                    raise ValueError(f"{name}= needs a type")
                _count(name, type, value, least, MAX_SLOTS)

        def register(function: F) -> F:
            if not callable(function):
                raise TypeError(f"@handler({type!r}) must decorate a function")
            self.handlers[type] = function
            if type is not None:
                for limits, value in (
                    (self.concurrency, concurrency),
                    (self.fleet_concurrency, fleet_concurrency),
                    (self.key_concurrency, key_concurrency),
                ):
                    if value is not None:
                        limits[type] = value
            return function

        return register

    @property
    def types(self) -> list[str]:
        return sorted(t for t in self.handlers if t is not None)


def _count(name: str, kind: str | None, value: Any, least: int, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValueError(f"{name} for {kind!r} must be a whole number from {least} to {most}")
