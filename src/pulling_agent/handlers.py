"""Load the user handler named ``module:function`` and call it, sync or async.

A handler receives the work document (a ``dict``) and returns nothing; raising marks the
attempt as failed. Sync handlers run in a thread pool so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from pulling_agent.errors import HandlerLoadError
from pulling_agent.timeouts import within

Document = dict[str, Any]
Handler = Callable[[Document], Any]


def load_handler(spec: str) -> Handler:
    """Import ``module:function`` (``function`` may be dotted, e.g. ``module:Class.method``)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise HandlerLoadError(f"HANDLER must look like module:function (got {spec!r})")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerLoadError(
            f"HANDLER {spec!r}: cannot import {module_name!r} ({exc}); "
            "is it installed or on PYTHONPATH?"
        ) from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerLoadError(
                f"HANDLER {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise HandlerLoadError(f"HANDLER {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


class HandlerRunner:
    """Call a handler the right way for its kind, with an optional per-document timeout."""

    def __init__(self, handler: Handler, threads: int, timeout: float | None) -> None:
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._timeout = timeout
        self._pool = (
            None
            if self._is_async
            else ThreadPoolExecutor(max_workers=threads, thread_name_prefix="handler")
        )

    async def __call__(self, document: Document) -> None:
        """Run the handler once. Raises whatever it raises, or ``TimeoutError``."""
        call: Awaitable[Any]
        if self._pool is None:
            call = self._handler(document)
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(self._pool, partial(self._handler, document))
        await within(self._timeout, call)

    def close(self) -> None:
        """Stop the thread pool without waiting for threads a timeout abandoned."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
