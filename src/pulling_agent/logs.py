"""Structured logging: one event per line, JSON when not a TTY, secrets scrubbed last.

Every event carries ``event`` (what happened) and, where it helps filtering, ``action``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from pulling_agent.config import LogFormat
from pulling_agent.text import HIDDEN, hidden, one_line, secrets_first

try:  # the [otel] extra: log lines inside a span carry its trace_id and span_id
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover
    _trace = None  # type: ignore[assignment]

REDACTED = HIDDEN


def _trace_ids(logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
    """``trace_id``/``span_id`` (hex, as exporters show them) when a span is active."""
    if _trace is not None:
        context = _trace.get_current_span().get_span_context()
        if context.is_valid:
            event.setdefault("trace_id", format(context.trace_id, "032x"))
            event.setdefault("span_id", format(context.span_id, "016x"))
    return event


class _ScrubbingRenderer:
    """Wrap a renderer and replace every known secret in its output."""

    def __init__(self, inner: Any, secrets: Iterable[str]) -> None:
        self._inner = inner
        self._secrets = secrets_first(secrets)

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        return hidden(self._inner(logger, name, event), self._secrets)


def _traceback(exc: BaseException) -> list[str]:
    """A traceback whose exception *messages* are one inert line each (a message may hold
    newlines that would forge log lines); chained exceptions included."""
    lines: list[str] = []
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and cause is not exc:
        lines += [*_traceback(cause), "", "The above exception led to:", ""]
    te = traceback.TracebackException.from_exception(exc, capture_locals=False)
    lines.append("Traceback (most recent call last):")
    lines += "".join(te.stack.format()).rstrip("\n").splitlines()
    lines.append(one_line("".join(te.format_exception_only()).rstrip("\n"), 2_000))
    return lines


def _inert_exc_info(logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
    """``format_exc_info`` for the console: see :func:`_traceback`."""
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info if isinstance(exc_info, BaseException) else None
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1]
    if exc is not None:
        event["exception"] = "\n".join(_traceback(exc))
    return event


class _Inert:
    """For the console renderer: every string value as one inert line (a document's id
    or a handler's message must not move the cursor, retitle the terminal or forge
    lines), exception text kept multi-line but without escape sequences."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        for key, value in list(event.items()):
            if key == "exception" and isinstance(value, str):
                event[key] = "\n".join(one_line(line, 2_000) for line in value.splitlines())
            elif isinstance(value, str):
                event[key] = one_line(value, 2_000)
        rendered: str = self._inner(logger, name, event)
        return rendered


def configure_logging(
    level: str = "INFO",
    fmt: LogFormat = LogFormat.AUTO,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog (and the stdlib root logger) for the whole process."""
    out = stream or sys.stderr
    as_json = fmt is LogFormat.JSON or (fmt is LogFormat.AUTO and not out.isatty())
    inner: Any = (
        structlog.processors.JSONRenderer()  # escapes every control character itself
        if as_json
        else _Inert(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    )
    numeric = logging.getLevelNamesMapping()[level]
    renderer = _ScrubbingRenderer(inner, secrets)
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _trace_ids,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info if as_json else _inert_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries (pymongo, uvicorn) log through the stdlib: warnings and above go to the same
    # stream in the same format, secrets scrubbed too.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    # Python warnings (pymongo's "Unknown option" for a URI typo) become log events too.
    logging.captureWarnings(True)


def get_logger(**context: Any) -> Any:
    """A bound structlog logger carrying ``context`` on every event."""
    return structlog.get_logger("pulling_agent").bind(**context)
