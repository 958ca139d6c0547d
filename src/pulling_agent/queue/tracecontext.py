"""The W3C trace context a work document carries from its producer to its handler.

When the code that enqueues runs inside an OpenTelemetry span, the document gets
``trace_context``: ``{"traceparent": ..., "tracestate": ..., "baggage": ...}`` (the last two
only when present), written by the W3C propagators. The agent reads it back, as untrusted
input like every other field: anything but a mapping of the known keys to bounded strings,
or a ``traceparent`` the W3C format refuses, is ignored (the caller logs why) and the
attempt's span starts a trace of its own. See docs/OBSERVABILITY.md.

OpenTelemetry is optional (``pulling-agent[otel]``): without ``opentelemetry-api``
installed every function here answers "nothing", and the product never imports an SDK.
:func:`enabled` is what keeps tracing free when off: no tracer provider configured, no span
is made and no field is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from pulling_agent import __version__
from pulling_agent.logs import get_logger
from pulling_agent.text import one_line

try:
    from opentelemetry import trace as trace  # re-exported: the spans of runtime.tracing
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the [otel] extra is not installed
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanContext, Tracer

TRACE = "trace_context"  # the document's field (the agents own it: client.jobs.RESERVED)
# the longest value of each key kept (W3C: traceparent version 00 is 55 characters,
# tracestate at most 512; baggage at most 8192 bytes)
KEYS = {"traceparent": 55, "tracestate": 512, "baggage": 8192}
# a process started inside a trace (a CI job, a shell script): the context it was given
ENVIRONMENT = {"traceparent": "TRACEPARENT", "tracestate": "TRACESTATE", "baggage": "BAGGAGE"}
MAX_LINKS = 128  # links on one claim or outcome-write span (the SDK's default limit)


class BadTraceContext(ValueError):
    """A trace context given in the environment that the W3C format refuses."""


_PROPAGATOR = (
    None
    if trace is None
    else CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
)
# the providers that record nothing: none set yet (the API's proxy), or the no-op one
_OFF: tuple[type, ...] = (
    () if trace is None else (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
)
SYSTEM = "pulling_agent"  # messaging.system: the queue (its broker is MongoDB)


def attributes(operation: str, collection: str, database: str) -> dict[str, Any]:
    """The messaging attributes every span of the product's carries."""
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": collection,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "db.namespace": database,
    }


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed."""
    return trace is not None


def enabled() -> bool:
    """Whether spans would be recorded: the API is installed and a tracer provider was set
    (by the SDK, ``opentelemetry-instrument``, or the user's code). Cheap: an isinstance."""
    return trace is not None and not isinstance(trace.get_tracer_provider(), _OFF)


_made: list[tuple[Any, Tracer]] = []  # (provider, its tracer): the last one asked


def tracer() -> Tracer:
    """The product's tracer (instrumentation scope ``pulling_agent``), of the tracer
    provider set now (made once per provider)."""
    assert trace is not None, "check enabled() first"
    provider = trace.get_tracer_provider()
    if not _made or _made[0][0] is not provider:
        _made[:] = [(provider, provider.get_tracer("pulling_agent", __version__))]
    return _made[0][1]


def carrier() -> dict[str, str] | None:
    """The current span's context as the document's ``trace_context``, or None when no
    span is active (or the API is not installed): nothing is added to the document."""
    if trace is None or _PROPAGATOR is None:
        return None
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    out: dict[str, str] = {}
    _PROPAGATOR.inject(out)
    kept = {k: v for k, v in out.items() if isinstance(v, str) and 0 < len(v) <= KEYS.get(k, 0)}
    return kept if "traceparent" in kept else None


def extract(value: Any) -> tuple[Context | None, str | None]:
    """``(context, problem)`` from a document's ``trace_context``: the context to parent
    the attempt's span on (None when there is none), and why the value was ignored (None
    when it was absent or good). Never raises, whatever ``value`` is."""
    if value is None or trace is None or _PROPAGATOR is None:
        return None, None
    if not isinstance(value, Mapping):
        return None, f"{TRACE} is a {type(value).__name__}, not a mapping"
    fields: dict[str, str] = {}
    for key, limit in KEYS.items():
        try:
            item = value.get(key)
        except Exception as exc:  # a Mapping whose get raises
            return None, f"{TRACE} cannot be read ({one_line(exc, 100)})"
        if item is None:
            continue
        if not isinstance(item, str):
            return None, f"{TRACE}.{key} is a {type(item).__name__}, not a string"
        if len(item) > limit:
            return None, f"{TRACE}.{key} is {len(item)} characters (at most {limit})"
        fields[key] = item
    if "traceparent" not in fields:
        return None, f"{TRACE} has no traceparent"
    try:
        context = _PROPAGATOR.extract(fields)
    except Exception as exc:  # the propagators validate; a bug there must not stop work
        return None, f"{TRACE} cannot be parsed ({one_line(exc, 100)})"
    if not trace.get_current_span(context).get_span_context().is_valid:
        shown = one_line(fields["traceparent"], 60)
        return None, f"{TRACE}.traceparent is not a W3C trace context: {shown!r}"
    return context, None


def trace_id(value: Any) -> str | None:
    """The trace id (32 hex digits) a document's ``trace_context`` names, if it is valid."""
    found = span_context(extract(value)[0])
    return None if found is None else format(found.trace_id, "032x")


def trace_link(value: Any, url: str) -> dict[str, str] | None:
    """``{"id": ..., "url": ...}`` for a document's ``trace_context`` (``url``: the
    ``TRACE_URL`` template, ``{trace_id}`` replaced; absent when it is empty)."""
    found = trace_id(value)
    if found is None:
        return None
    return {"id": found, **({"url": url.replace("{trace_id}", found)} if url else {})}


def span_context(context: Context | None) -> SpanContext | None:
    """The (remote) span context a :func:`extract` context holds, for a link."""
    if context is None or trace is None:
        return None
    found = trace.get_current_span(context).get_span_context()
    return found if found.is_valid else None


@contextmanager
def from_environment(environ: Mapping[str, str]) -> Iterator[None]:
    """Run the block inside the trace context ``TRACEPARENT`` (with ``TRACESTATE`` and
    ``BAGGAGE``) gives, as a process started by a traced one receives it; no variable, no
    change. Raises :class:`BadTraceContext` naming the variable when a value is refused."""
    given = {key: environ[name] for key, name in ENVIRONMENT.items() if environ.get(name)}
    if not given or trace is None:
        yield
        return
    from opentelemetry import context as otel_context

    context, problem = extract(given)
    if context is None:
        said = one_line(problem or "", 300)
        for key, name in ENVIRONMENT.items():
            said = said.replace(f"{TRACE}.{key}", name)
        raise BadTraceContext(said.replace(f"{TRACE} has no traceparent", "TRACEPARENT is empty"))
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


_reported: set[str] = set()  # the kinds of tracing failure logged (once each)


def report(exc: Exception) -> None:
    """A tracing set-up that raises (a faulty span processor or exporter of the user's
    SDK): logged once per kind of error; the work goes on without that span."""
    kind = one_line(type(exc).__qualname__, 100)
    if kind in _reported:
        return
    _reported.add(kind)
    get_logger(component="tracing").warning(
        "tracing failed; going on without the span",
        action="trace.failed",
        error_type=kind,
        error=one_line(exc, 300),
    )


@contextmanager
def guarded(opening: Callable[[], AbstractContextManager[Any]]) -> Iterator[Any]:
    """The span ``opening()`` makes (a ``start_as_current_span``), current for the block;
    None when making, entering or ending it fails (:func:`report`). Tracing never fails
    the work it traces; the block's own exceptions pass through unchanged."""
    manager = made = None
    try:
        manager = opening()
        made = manager.__enter__()
    except Exception as exc:
        report(exc)
        manager = None
    if manager is None:
        yield None
        return
    try:
        yield made
    except BaseException as exc:
        try:
            manager.__exit__(type(exc), exc, exc.__traceback__)
        except Exception as bad:
            if bad is not exc:
                report(bad)
        raise
    try:
        manager.__exit__(None, None, None)
    except Exception as exc:
        report(exc)


@contextmanager
def span(name: str, attributes: Mapping[str, Any], producer: bool = False) -> Iterator[Any]:
    """A span of the product's (INTERNAL, or PRODUCER), current for the block, when
    tracing is on; yields it (None when off). An exception marks it failed by its type:
    its message may hold anything."""
    if trace is None or not enabled():
        yield None
        return
    kind = trace.SpanKind.PRODUCER if producer else trace.SpanKind.INTERNAL
    with guarded(
        lambda: tracer().start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
    ) as made:
        try:
            yield made
        except BaseException as exc:
            if made is not None:
                made.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__qualname__))
            raise


def sending(collection: Any) -> AbstractContextManager[Any]:
    """The producer's ``send <collection>`` span around one enqueue call (the documents'
    creation context: every document of the call carries it)."""
    name = one_line(collection.name, 200)
    said = attributes("send", name, one_line(collection.database.name, 200))
    return span(f"send {name}", said, producer=True)
