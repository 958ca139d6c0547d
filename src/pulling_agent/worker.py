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

Run it with ``HANDLERS=myapp.jobs:worker``: the agent claims only the types registered
(in the claim query), exactly as with ``HANDLERS=email=…,invoice=…``. ``TYPE_CONCURRENCY``
and ``TYPE_RATE_LIMIT`` from the environment apply too (and win over ``concurrency=``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
MAX_TYPE_CHARS = 200


class Worker:
    def __init__(self) -> None:
        self.handlers: dict[str | None, Callable[..., Any]] = {}
        self.concurrency: dict[str, int] = {}

    def handler(
        self, type: str | None = None, *, concurrency: int | None = None
    ) -> Callable[[F], F]:
        """Register the decorated function for documents whose type field is ``type``
        (``None``: documents without one). ``concurrency``: at most this many at once."""
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
            if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
                raise ValueError(f"concurrency for {type!r} must be a whole number >= 1")

        def register(function: F) -> F:
            if not callable(function):
                raise TypeError(f"@handler({type!r}) must decorate a function")
            self.handlers[type] = function
            if concurrency is not None and type is not None:
                self.concurrency[type] = concurrency
            return function

        return register

    @property
    def types(self) -> list[str]:
        return sorted(t for t in self.handlers if t is not None)
