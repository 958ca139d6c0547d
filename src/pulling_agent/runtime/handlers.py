"""Load the user handlers named in the settings and call them, sync or async.

A handler receives the work document (a ``dict``) and returns nothing; raising marks the
attempt as failed. Sync handlers run in a thread pool so the event loop stays responsive.
:func:`build_handlers` wires ``HANDLER`` / ``HANDLERS`` (entries or a
:class:`~pulling_agent.worker.Worker`) into what the agent runs, or raises a
:class:`~pulling_agent.errors.PullingAgentError` whose message names the setting and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from pulling_agent.config import Settings
from pulling_agent.errors import ConfigError, HandlerLoadError, PullingAgentError
from pulling_agent.logs import get_logger
from pulling_agent.text import safe_text
from pulling_agent.timeouts import within
from pulling_agent.work import Context, Fail, accepts_context
from pulling_agent.worker import Worker

Document = dict[str, Any]
Handler = Callable[..., Any]  # (document) or (document, context)


def load_handler(spec: str, what: str = "HANDLER") -> Handler:
    """Import ``module:function`` (``function`` may be dotted, e.g. ``module:Class.method``).
    ``what`` names the setting in errors (``HANDLER``, or a job's ``func``)."""
    target = load_object(spec, what)
    if not callable(target):
        raise HandlerLoadError(f"{what} {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


def load_object(spec: str, what: str) -> Any:
    """Import ``module:attribute`` (dotted attributes allowed)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise HandlerLoadError(f"{what} must look like module:function (got {spec!r})")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerLoadError(
            f"{what} {spec!r}: cannot import {module_name!r} ({exc}); "
            "is it installed or on PYTHONPATH?"
        ) from None
    except SyntaxError as exc:
        raise HandlerLoadError(
            f"{what} {spec!r}: {exc.filename}:{exc.lineno}: {exc.msg}: fix the syntax error"
        ) from None
    except Exception as exc:  # the module raised while it was imported
        raise HandlerLoadError(
            f"{what} {spec!r}: importing {module_name!r} raised "
            f"{type(exc).__name__}: {safe_text(exc, 300)}"
        ) from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerLoadError(
                f"{what} {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return target


class HandlerMisdeclared(PullingAgentError):
    """A sync handler returned a coroutine: its body never ran. Declare it ``async def``."""


def returns_coroutine(handler: Handler) -> bool:
    """Whether a handler that is not itself a coroutine function wraps one (a sync
    decorator or ``functools.partial`` around an ``async def``): calling it only creates a
    coroutine. Detectable at start-up for the usual wrappers, not for every callable."""
    target: Any = handler
    while isinstance(target, partial):
        target = target.func
    return inspect.iscoroutinefunction(inspect.unwrap(target))


class HandlerRunner:
    """Call a handler the right way for its kind, with an optional per-document timeout.

    Sync handlers run in a thread pool. A thread whose handler outlives ``HANDLER_TIMEOUT``
    cannot be stopped; it is *abandoned*: its document fails with ``TimeoutError``, and the
    pool holds ``max_abandoned`` threads beyond ``threads`` so that abandoned threads do not
    starve the documents after it. :attr:`abandoned` counts the threads still stuck.
    """

    def __init__(
        self, handler: Handler, threads: int, timeout: float | None, max_abandoned: int = 8
    ) -> None:
        self._handler = handler
        self._takes_context = accepts_context(handler)
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        self._timeout = timeout
        self.max_abandoned = max_abandoned
        self.abandoned = 0
        self._pool = (
            None
            if self._is_async
            else ThreadPoolExecutor(
                max_workers=threads + max_abandoned, thread_name_prefix="handler"
            )
        )

    @property
    def cancellable(self) -> bool:
        """Whether a running call can be cancelled (async handlers; threads cannot be)."""
        return self._is_async

    @property
    def misdeclared(self) -> bool:
        """A sync callable around an ``async def`` (see :func:`returns_coroutine`)."""
        return not self._is_async and returns_coroutine(self._handler)

    async def __call__(self, document: Document, ctx: Context | None = None) -> Any:
        """Run the handler once (with ``ctx`` if it takes one); what it returns. Raises
        whatever it raises (``BaseException`` included), ``TimeoutError``, or
        :class:`HandlerMisdeclared`."""
        args = (document, ctx) if self._takes_context else (document,)
        if self._pool is None:
            return await within(self._timeout, self._handler(*args))
        loop = asyncio.get_running_loop()
        future = self._pool.submit(self._call_sync, *args)
        try:
            aborted, value = await within(self._timeout, asyncio.wrap_future(future, loop=loop))
        except TimeoutError:
            if not future.done():
                self._abandon(future, loop)
            raise
        if aborted is not None:
            raise aborted
        return value

    def _call_sync(self, *args: Any) -> tuple[BaseException | None, Any]:
        """Run in a pool thread. A ``BaseException`` that is not an ``Exception`` (exit,
        interrupt, ``GeneratorExit``...) is returned, to be raised in the event loop's own
        frame: passed through a future, ``GeneratorExit`` would end the awaiting coroutine
        instead of reaching the pipeline's handler."""
        try:
            result = self._handler(*args)
        except Exception:
            raise
        except BaseException as exc:
            return exc, None
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: no "was never awaited" warning
            raise HandlerMisdeclared(
                f"the handler returned {type(result).__name__} instead of running: "
                "declare it 'async def' (a sync function that returns a coroutine is "
                "never awaited)"
            )
        return None, result

    def _abandon(self, future: Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.abandoned += 1

        def finished(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody counts
                loop.call_soon_threadsafe(self._release)

        future.add_done_callback(finished)

    def _release(self) -> None:
        self.abandoned -= 1

    def close(self) -> None:
        """Stop the thread pool without waiting for threads a timeout abandoned."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class TypedHandlers:
    """Routing by type (``HANDLERS``): the document's ``TYPE_FIELD`` picks the handler;
    ``HANDLER``, if also set, runs documents without a type. Per-type concurrency limits
    (``TYPE_CONCURRENCY``) hold a document's worker until its type has room. Agents claim
    only the types they serve (see ``queue.model.claim_scope``), so an unknown type here means
    the document was changed after its claim: it fails without retries."""

    def __init__(
        self,
        runners: dict[str, HandlerRunner],
        default: HandlerRunner | None,
        type_field: str,
        limits: dict[str, int],
    ) -> None:
        self._runners = runners
        self._default = default
        self._type_field = type_field
        self._limits = {kind: asyncio.Semaphore(n) for kind, n in limits.items()}
        self._all = [*runners.values(), *([default] if default else [])]
        # a Worker's fleet_concurrency= / key_concurrency= (the environment's win: bootstrap)
        self.fleet_limits: dict[str, int] = {}
        self.key_limits: dict[str, int] = {}

    @property
    def served_types(self) -> list[str | None]:
        """The types this agent claims (``None``: documents without one)."""
        return [*sorted(self._runners), *([None] if self._default else [])]

    @property
    def cancellable(self) -> bool:
        return all(r.cancellable for r in self._all)

    @property
    def abandoned(self) -> int:
        return sum(r.abandoned for r in self._all)

    @property
    def max_abandoned(self) -> int:
        return max((r.max_abandoned for r in self._all), default=0)

    async def __call__(self, document: Document, ctx: Context | None = None) -> Any:
        kind = document.get(self._type_field)
        runner = self._runners.get(kind) if isinstance(kind, str) else None
        if runner is None and kind is None:
            runner = self._default
        if runner is None:
            raise Fail(f"no handler for {self._type_field}={safe_text(kind, 100)!r} on this agent")
        limit = self._limits.get(kind) if isinstance(kind, str) else None
        if limit is None:
            return await runner(document, ctx)
        async with limit:
            return await runner(document, ctx)

    def close(self) -> None:
        for runner in self._all:
            runner.close()


def build_handlers(settings: Settings) -> HandlerRunner | TypedHandlers | None:
    """The one handler (``HANDLER``), or routing by type (``HANDLERS``: entries, or a
    :class:`~pulling_agent.worker.Worker`); None when neither is set. Raises
    :class:`HandlerLoadError` or :class:`ConfigError` (one line, naming the setting)."""
    default = None
    if settings.handler:
        default = _runner(settings, load_handler(settings.handler, "HANDLER"), "HANDLER")
    if settings.handlers_registry:
        return _from_registry(settings, default)
    if not settings.handlers:
        return default
    runners = {
        kind: _runner(settings, load_handler(spec, f"HANDLERS {kind}"), f"HANDLERS {kind}")
        for kind, spec in settings.handler_map.items()
    }
    return TypedHandlers(runners, default, settings.type_field, settings.type_limits)


def _runner(settings: Settings, handler: Handler, what: str) -> HandlerRunner:
    runner = HandlerRunner(
        handler, settings.concurrency, settings.handler_timeout, settings.max_abandoned_threads
    )
    if runner.misdeclared:
        get_logger(agent_id=settings.agent_id).error(
            f"{what} is a sync callable around an async function: every document will fail "
            "until it is declared 'async def'",
            action="agent.handler_misdeclared",
            handler=what,
        )
    return runner


def _from_registry(settings: Settings, default: HandlerRunner | None) -> TypedHandlers:
    spec = settings.handlers_registry or ""
    worker = load_object(spec, "HANDLERS")
    if not isinstance(worker, Worker):
        raise ConfigError(
            f"HANDLERS={spec} is a {type(worker).__name__}, not a pulling_agent.Worker "
            "(or give type=module:function entries)"
        )
    if not worker.handlers:
        raise ConfigError(f"HANDLERS={spec}: the Worker has no handlers registered")
    if None in worker.handlers and default is not None:
        raise ConfigError(
            f"HANDLERS={spec} has a handler for documents without a type; unset HANDLER"
        )
    for name, limits in (
        ("TYPE_CONCURRENCY", settings.type_limits),
        ("TYPE_RATE_LIMIT", settings.type_rates),
    ):
        unknown = sorted(set(limits) - set(worker.types))
        if unknown:
            raise ConfigError(
                f"{name} names {unknown[0]!r}, which HANDLERS={spec} does not register: "
                "give a limit only to a type this agent handles"
            )
    runners = {
        kind: _runner(settings, function, f"HANDLERS {spec} {kind}")
        for kind, function in worker.handlers.items()
        if kind is not None
    }
    if None in worker.handlers:
        default = _runner(settings, worker.handlers[None], f"HANDLERS {spec} (no type)")
    if worker.key_concurrency and settings.concurrency_key is None:
        raise ConfigError(
            f"HANDLERS={spec}: key_concurrency= for {sorted(worker.key_concurrency)[0]!r} "
            "needs CONCURRENCY_KEY (the field whose values are limited, e.g. tenant)"
        )
    limits = {**worker.concurrency, **settings.type_limits}
    handlers = TypedHandlers(runners, default, settings.type_field, limits)
    handlers.fleet_limits = dict(worker.fleet_concurrency)
    handlers.key_limits = dict(worker.key_concurrency)
    return handlers
