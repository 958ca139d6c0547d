"""The agent's OpenTelemetry spans (docs/OBSERVABILITY.md), made only when a tracer
provider is configured (:func:`queue.tracecontext.enabled`); otherwise every method here
returns at once and no document field is read.

* ``process <type>`` (CONSUMER), one per attempt, around the handler: its parent is the
  producer's span, read from the document's ``trace_context``, and it links to it too (the
  messaging conventions make the link the requirement and the parent an option for a
  single message: with the parent, every attempt of a document - retries included - is in
  the producer's trace). Attributes: ``messaging.*``, the document's id, attempt, outcome,
  error, and the time it waited in the queue.
* ``receive <collection>`` (CLIENT), one per claim that leased documents, linked to each
  document's producer span: a slow claim shows in the traces it held back.
* ``settle <collection>`` (CLIENT), one per outcome write, linked to each attempt's span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pulling_agent.config import Settings
from pulling_agent.queue import tracecontext as tc
from pulling_agent.queue.model import Claim, Completion, OutcomeKind
from pulling_agent.text import hidden, one_line, secrets_first

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span

WAIT = "pulling_agent.queue.wait_seconds"  # due (enqueued, or due again) to claimed


def _waited(document: Any, now: datetime) -> float | None:
    """Seconds from when the document became due (its ``available_at`` or, when there is
    none, ``enqueued_at``) to ``now``; None when neither is a date."""
    due = document.get("available_at")
    if not isinstance(due, datetime):
        due = document.get("enqueued_at")
    if not isinstance(due, datetime):
        return None
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return max(0.0, (now - due).total_seconds())


class Attempt:
    """What :meth:`Tracing.process` yields: :meth:`done` records the attempt's outcome on
    its span and gives the outcome the span's context, for the write's link."""

    __slots__ = ("_hide", "_span")

    def __init__(self, span: Span | None, hide: Callable[[str], str] = str) -> None:
        self._span = span
        self._hide = hide

    def done(self, completion: Completion) -> Completion:
        span = self._span
        if span is None:
            return completion
        span.set_attribute("pulling_agent.outcome", completion.kind.value)
        if completion.error is not None:
            span.set_attribute("error.type", one_line(completion.error.type, 200))
            if completion.kind in (OutcomeKind.FAILED, OutcomeKind.RETRY):
                said = self._hide(one_line(completion.error.message, 500))
                span.set_status(tc.trace.Status(tc.trace.StatusCode.ERROR, said))
        return replace(completion, trace=span.get_span_context())


OFF = Attempt(None)


class Tracing:
    def __init__(
        self,
        database: str,
        collection: str,
        type_field: str,
        log: Any,
        secrets: Sequence[str] = (),
    ) -> None:
        self._secrets = secrets_first(secrets)
        self._database = database
        self._collection = collection
        self._type_field = type_field
        self._log = log

    @classmethod
    def of(cls, settings: Settings, log: Any) -> Tracing:
        """The spans of the agent ``settings`` configure (its collection, its secrets)."""
        return cls(
            settings.mongodb_database,
            settings.mongodb_collection,
            settings.type_field,
            log,
            settings.secrets(),
        )

    def _hide(self, text: str) -> str:
        """``text`` with the agent's secrets (URI, password, tokens) as ``***``: an
        exporter is one more place they must never reach."""
        return hidden(text, self._secrets)

    def _common(self, operation: str) -> dict[str, Any]:
        return tc.attributes(operation, self._collection, self._database)

    def _parent(self, claim: Claim, log: bool) -> Any:
        """The producer's context of ``claim`` (read once: the claim's span reads it first,
        the attempt's span reuses it); ``log``: say why it was ignored, if it was."""
        if claim.trace is None:
            claim.trace = tc.extract(claim.document.get(tc.TRACE))
        context, problem = claim.trace
        if problem is not None and log:
            self._log.warning(
                "trace context ignored",
                action="trace.context_ignored",
                doc_id=one_line(claim.doc_id, 200),
                reason=problem,
            )
        return context

    @contextmanager
    def process(self, claim: Claim, clock: Callable[[], datetime]) -> Iterator[Attempt]:
        """The attempt's span, current while the handler runs (its own spans and log lines
        are children of it). An attempt cancelled by a shutdown ends as ``released``."""
        if not tc.enabled():
            yield OFF
            return
        parent = self._parent(claim, log=True)
        kind = claim.document.get(self._type_field)
        name = f"process {one_line(kind, 100) if isinstance(kind, str) else self._collection}"
        attributes = self._common("process")
        attributes["messaging.message.id"] = one_line(claim.doc_id, 200)
        attributes["pulling_agent.attempt"] = claim.attempts
        waited = _waited(claim.document, clock())  # MongoDB's time, like the document's
        if waited is not None:
            attributes[WAIT] = waited
        linked = tc.span_context(parent)
        with tc.guarded(
            lambda: tc.tracer().start_as_current_span(
                name,
                context=parent,
                kind=tc.trace.SpanKind.CONSUMER,
                links=[tc.trace.Link(linked)] if linked is not None else (),
                attributes=attributes,
                record_exception=False,  # the outcome says what happened (Attempt.done)
                set_status_on_exception=False,
            )
        ) as span:
            if span is None:  # the tracing set-up failed (reported): the work goes on
                yield OFF
                return
            try:
                yield Attempt(span, self._hide)
            except BaseException:
                span.set_attribute("pulling_agent.outcome", "released")
                raise

    def claimed(self, started_ns: int, claims: list[Claim]) -> None:
        """A span for a claim that leased ``claims``, from ``started_ns`` to now."""
        if not claims or not tc.enabled():
            return
        links = self._links(tc.span_context(self._parent(c, log=False)) for c in claims)
        attributes = self._common("receive")
        attributes["messaging.batch.message_count"] = len(claims)
        try:
            span = tc.tracer().start_span(
                f"receive {self._collection}",
                kind=tc.trace.SpanKind.CLIENT,
                links=links,
                attributes=attributes,
                start_time=started_ns,
            )
            span.end()
        except Exception as exc:  # the user's tracing set-up: never the claim's failure
            tc.report(exc)

    @contextmanager
    def settling(self, batch: list[Completion]) -> Iterator[None]:
        """A span around one outcome write (with its retries), linked to the attempts."""
        if not tc.enabled():
            yield
            return
        attributes = self._common("settle")
        attributes["messaging.batch.message_count"] = len(batch)
        links = self._links(c.trace for c in batch)
        with tc.guarded(
            lambda: tc.tracer().start_as_current_span(
                f"settle {self._collection}",
                kind=tc.trace.SpanKind.CLIENT,
                links=links,
                attributes=attributes,
            )
        ):
            yield

    @staticmethod
    def _links(contexts: Iterator[Any]) -> list[Link]:
        links = []
        for context in contexts:
            if context is not None:
                links.append(tc.trace.Link(context))
                if len(links) >= tc.MAX_LINKS:
                    break
        return links
