"""What a failed attempt turns into: retry later (backoff with jitter) or dead letter. Pure."""

from __future__ import annotations

import traceback as tb
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pulling_agent.errors import PullingAgentError
from pulling_agent.queue.model import Claim, Completion, Document, ErrorInfo, OutcomeKind
from pulling_agent.text import hidden, safe_text

ERROR_HISTORY = 10
MAX_TRACEBACK_CHARS = 8_000
MAX_MESSAGE_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempts: int, jitter: float) -> float:
        """Seconds to wait after failed attempt number ``attempts`` (1-based).

        Exponential (``base * 2**(attempts-1)``, capped at ``max_seconds``) with "equal
        jitter": half fixed, half scaled by ``jitter`` in [0, 1), so agents that failed
        together do not retry together.
        """
        ceiling: float = min(self.max_seconds, self.base_seconds * 2 ** min(attempts - 1, 62))
        return ceiling / 2 + ceiling / 2 * jitter


def error_info(
    exc: BaseException, at: datetime, attempt: int, secrets: Sequence[str] = ()
) -> ErrorInfo:
    """The record of one failed attempt. Never raises, whatever ``exc``'s ``__str__`` does.
    ``secrets`` (the agent's: URI, password, tokens; longest first) become ``***`` in the
    message and the traceback: they are stored, and shown by the API and the console."""
    try:
        trace = "".join(tb.format_exception(exc))
    except Exception:
        trace = f"<traceback of {type(exc).__qualname__} could not be formatted>"
    return ErrorInfo(
        type=safe_text(type(exc).__qualname__, 200),
        message=safe_text(
            hidden(safe_text(exc, MAX_MESSAGE_CHARS * 2), secrets), MAX_MESSAGE_CHARS
        ),
        traceback=hidden(trace, secrets)[-MAX_TRACEBACK_CHARS:],
        at=at,
        attempt=attempt,
    )


def error_history(document: Document, error: ErrorInfo) -> tuple[Document, ...]:
    """The document's previous failures (last ``ERROR_HISTORY - 1``) plus ``error``."""
    previous = document.get("errors")
    kept = [e for e in previous if isinstance(e, dict)] if isinstance(previous, list) else []
    return (*kept[-(ERROR_HISTORY - 1) :], error.as_document())


def failure_outcome(
    claim: Claim, error: ErrorInfo, policy: RetryPolicy, now: datetime, jitter: float
) -> Completion:
    """Retry with backoff while attempts remain, else dead letter. Nothing is dropped."""
    history = error_history(claim.document, error)
    if claim.attempts >= policy.max_attempts:
        return Completion(claim.doc_id, claim.token, OutcomeKind.FAILED, error, history)
    wait = timedelta(seconds=policy.delay(claim.attempts, jitter))
    return Completion(
        claim.doc_id, claim.token, OutcomeKind.RETRY, error, history, available_at=now + wait
    )


class AttemptsExhausted(PullingAgentError):
    """A document was claimed more than MAX_ATTEMPTS times without a recorded outcome:
    its agents died or lost the lease each time (a handler that crashes the process?)."""
