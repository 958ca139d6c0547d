"""What the commands print: tables and JSON on stdout, every value as one inert line.

Values come from documents anyone may have written (ids, errors, pause reasons): the
commands show them through :func:`pulling_agent.text.cell`, never read as markup or escape
sequences.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from pulling_agent.encoding import parse_time, to_json
from pulling_agent.text import safe_text

WIDTH_OFF_TERMINAL = 160  # a pipe or a file gets this many columns (a terminal: its own)


def console(fit_pipe: bool = False) -> Console:
    """A rich console for stdout (``fit_pipe``: a fixed width when not a terminal)."""
    if fit_pipe:
        return Console(width=None if sys.stdout.isatty() else WIDTH_OFF_TERMINAL)
    return Console()


def table(title: str | Text, *columns: str, fold: bool = False) -> Table:
    """A table with these columns (``fold``: wrap, never cut); a title built from stored
    values must come through :func:`~pulling_agent.text.cell`."""
    shown = Table(title=title)
    for column in columns:
        if fold:
            shown.add_column(column, overflow="fold")
        else:
            shown.add_column(column)
    return shown


def show(renderable: RenderableType) -> None:
    """Print a table (or any rich renderable) on stdout."""
    Console().print(renderable)


def echo_json(value: Any, indent: int | None = None) -> None:
    """One JSON value on stdout (one line unless ``indent``)."""
    typer.echo(json.dumps(value, indent=indent))


ID_WIDTH = 40  # ids up to this long (ObjectId 24, UUID 36) are never wrapped


def id_column(shown: Table, ids: list[Any], name: str = "_id") -> None:
    """A column for ids that keeps each whole on one line when it can (they are what other
    commands take), and folds only ids too long for any terminal."""
    longest = max((len(safe_text(i, 10_000)) for i in ids), default=len(name))
    if longest <= ID_WIDTH:
        shown.add_column(name, no_wrap=True, min_width=max(longest, len(name)))
    else:
        shown.add_column(name, overflow="fold")


def short_time(value: Any) -> str:
    """An ISO-8601 time (or datetime) as ``2026-12-02 07:16:22Z``: fits at 80 columns."""
    parsed = parse_time(value)
    if parsed is None:
        return safe_text(value if value is not None else "-", 60)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def value_text(value: Any) -> str:
    """A stored value as JSON (strings quoted, so ``"3"`` is not shown as the number 3)."""
    return json.dumps(to_json(value), ensure_ascii=False)


def error_summary(error: Any) -> str:
    """``type: message`` of a recorded error, whatever shape it has."""
    if isinstance(error, dict):
        return f"{safe_text(error.get('type', ''), 100)}: {safe_text(error.get('message', ''))}"
    return safe_text(error or "")
