"""Turning untrusted values into text that cannot hurt: never raises, bounded in size, and
(for terminals and health files) free of control characters.

Documents, handler exceptions and control values may carry anything: an ``__str__`` that
raises, megabytes of text, escape sequences that repaint a terminal, newlines that forge
extra ``key=value`` lines in a health file.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text


# C0 and C1 controls (escape sequences, newlines), line/paragraph separators, and the
# bidirectional overrides that make a terminal show text in another order than it is
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(value: object, limit: int = 500) -> str:
    """``str(value)`` cut to ``limit`` characters; ``<unprintable T>`` if ``str`` raises."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


HIDDEN = "***"


def secrets_first(secrets: Iterable[str]) -> list[str]:
    """The non-empty secrets, longest first: a URI is hidden whole before its password."""
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def hidden(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` (as :func:`secrets_first` orders them) as
    ``***``."""
    for secret in secrets:
        text = text.replace(secret, HIDDEN)
    return text


def one_line(value: object, limit: int = 500) -> str:
    """:func:`safe_text` with every control character (newlines, escapes, bidi overrides)
    shown as ``\\xNN`` or ``\\uNNNN``, so the result is one inert line."""
    return _CONTROL.sub(_escape, safe_text(value, limit))


_CONTROL_BUT_LINES = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def inert_lines(value: object, limit: int = 8_000) -> str:
    """:func:`one_line` that keeps newlines and tabs: for tracebacks shown as text."""
    return _CONTROL_BUT_LINES.sub(_escape, safe_text(value, limit))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def print_error(message: str) -> None:
    """One line on stderr, never wrapped, never interpreted as markup or escapes."""
    sys.stderr.write(one_line(message, 2_000) + "\n")
    sys.stderr.flush()


def cell(value: object, limit: int = 300) -> Text:
    """A table cell or title for rich: one inert line, never read as markup."""
    from rich.text import Text  # here: the health probe imports this module, not rich

    return Text(one_line(value, limit))
