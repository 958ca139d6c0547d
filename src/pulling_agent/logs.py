"""Structured logging: one event per line, JSON when not a TTY, secrets scrubbed last.

Every event carries ``event`` (what happened) and, where it helps filtering, ``action``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from pulling_agent.config import LogFormat

REDACTED = "***"


class _ScrubbingRenderer:
    """Wrap a renderer and replace every known secret in its output."""

    def __init__(self, inner: Any, secrets: Iterable[str]) -> None:
        self._inner = inner
        # longest first, so a URI is replaced whole before its password is
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        rendered: str = self._inner(logger, name, event)
        for secret in self._secrets:
            rendered = rendered.replace(secret, REDACTED)
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
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric = logging.getLevelNamesMapping()[level]
    renderer = _ScrubbingRenderer(inner, secrets)
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
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
