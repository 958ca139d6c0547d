"""A handler's return value, as the document keeps it: ``result``, or why not, ``result_error``.

The value travels in the outcome write (no extra round trip). It is kept when it is
BSON-encodable and at most ``RESULT_MAX_BYTES`` encoded (16 KiB by default); otherwise the
document is still ``processed``, without ``result``, and ``result_error`` says why (too
large, or not encodable and which type). ``None`` (a handler that returns nothing) keeps
nothing. Before it is measured, every string of the value (keys included) has the secrets
the agent knows (the URI's password, API tokens) replaced by ``***``: a handler that echoes
its configuration cannot leak it into the collection.

Pure: no I/O. The runtime calls :func:`kept`; the stores write what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bson
from bson.errors import BSONError

from pulling_agent.text import safe_text

RESULT = "result"
RESULT_ERROR = "result_error"
DEFAULT_MAX_BYTES = 16 * 1024
MAX_DEPTH = 90  # BSON nesting MongoDB accepts is 100 levels; the document adds a few
HIDDEN = "***"
# what a reader of outcomes needs of a document (client.waiting, a then job's members)
OUTCOME_FIELDS = {"status": 1, RESULT: 1, RESULT_ERROR: 1, "error": 1, "cancel_reason": 1}


@dataclass(frozen=True, slots=True)
class Kept:
    """What the outcome write stores: ``value`` (when ``stored``) or ``error``."""

    stored: bool = False
    value: Any = None
    error: str = ""

    @property
    def fields(self) -> dict[str, Any]:
        """The ``$set`` of the outcome write for this result (empty: nothing to keep)."""
        if self.stored:
            return {RESULT: self.value}
        return {RESULT_ERROR: self.error} if self.error else {}


NOTHING = Kept()


class _TooDeep(ValueError):
    pass


def _scrub(value: Any, secrets: Sequence[str], depth: int = 0) -> Any:
    """``value`` with every secret in its strings replaced; containers copied, the rest
    as is (the encoder judges them)."""
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, HIDDEN)
        return value
    if isinstance(value, Mapping):
        return {
            _scrub(k, secrets, depth + 1) if isinstance(k, str) else k: _scrub(
                v, secrets, depth + 1
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets, depth + 1) for v in value]
    return value


def kept(value: Any, max_bytes: int, secrets: Sequence[str] = ()) -> Kept:
    """What to store of a handler's return ``value`` (``max_bytes`` 0: results are off,
    nothing is kept). Never raises; its error never holds a secret either."""
    if value is None or max_bytes <= 0:
        return NOTHING
    hidden = [s for s in secrets if s]
    found = _kept(value, max_bytes, hidden)
    return Kept(error=_scrub(found.error, hidden)) if found.error else found


def _kept(value: Any, max_bytes: int, secrets: list[str]) -> Kept:
    if isinstance(value, str | bytes) and len(value) > max_bytes:  # not copied to learn it
        unit = "characters" if isinstance(value, str) else "bytes"
        return Kept(error=_too_big(f"a {type(value).__name__} of {len(value):,} {unit}", max_bytes))
    try:
        clean = _scrub(value, secrets)
        size = len(bson.encode({RESULT: clean}))
    except _TooDeep:
        return Kept(error=f"the result nests deeper than {MAX_DEPTH} levels: not stored")
    except (BSONError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        return Kept(
            error=f"the result ({safe_text(type(value).__qualname__, 100)}) is not "
            f"BSON-encodable: {safe_text(exc, 200)}"
        )
    except Exception as exc:  # a hostile __iter__/__eq__/__str__: never the agent's end
        return Kept(error=f"the result could not be read: {safe_text(type(exc).__name__, 100)}")
    if size > max_bytes:
        return Kept(error=_too_big(f"{size:,} bytes encoded", max_bytes))
    return Kept(stored=True, value=clean)


def _too_big(size: str, max_bytes: int) -> str:
    return (
        f"the result is {size}, more than RESULT_MAX_BYTES={max_bytes:,}: not "
        "stored (store large outputs elsewhere and return their name)"
    )


def refused(exc: BaseException) -> Kept:
    """The result MongoDB (or the driver) refused to write, encodable as it looked (a
    ``$``-prefixed key, a value the server cannot store): kept as its error instead."""
    return Kept(error=f"MongoDB refused to store the result: {safe_text(exc, 300)}")
