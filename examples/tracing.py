"""One email, end to end, in one trace: the producer's span, the attempt that failed, the
retry that succeeded (docs/OBSERVABILITY.md). Needs ``pip install opentelemetry-sdk``.

    # the agent: every attempt's span, as JSON lines
    TRACE_FILE=agent.jsonl HANDLER=examples.tracing:send_email pulling-agent run
    # the producer: a span around enqueue
    TRACE_FILE=producer.jsonl python -m examples.tracing send a@example.com
    # the trace, as a tree
    python -m examples.tracing show producer.jsonl agent.jsonl

The SDK is set up here, in the handler's module, because pulling-agent imports only the
OpenTelemetry API. In production use OTLP instead of a file: ``opentelemetry-instrument
pulling-agent run`` with the ``OTEL_*`` variables does it without code.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from pulling_agent import Context


def _as_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def set_up(service: str) -> None:
    """Spans to the file ``TRACE_FILE`` names, one JSON object per line."""
    path = os.environ.get("TRACE_FILE")
    if not path:
        return
    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_as_line))
    )
    trace.set_tracer_provider(provider)


async def send_email(doc: dict[str, Any], ctx: Context) -> dict[str, str]:
    """Fails its first attempt, as a flaky mail server would; the retry sends."""
    with trace.get_tracer("examples.tracing").start_as_current_span("smtp send") as span:
        span.set_attribute("email.to", str(doc.get("to")))
        if ctx.attempt == 1:
            raise ConnectionError("smtp timed out")
    return {"sent_to": str(doc.get("to"))}


def send(to: str) -> None:
    from pymongo import MongoClient

    from pulling_agent.client import enqueue

    client: MongoClient[dict[str, Any]] = MongoClient(os.environ["MONGODB_URI"], tz_aware=True)
    work = client[os.environ["MONGODB_DATABASE"]][os.environ["MONGODB_COLLECTION"]]
    tracer = trace.get_tracer("examples.tracing")
    with tracer.start_as_current_span("POST /signup", kind=trace.SpanKind.SERVER):
        job = enqueue(work, {"to": to}, type="email")
    print("enqueued", job.id)
    client.close()


def show(paths: list[str]) -> None:
    """The spans of the files as trees, a trace each: name, duration, the attributes
    that tell the story."""
    spans = []
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            spans += [json.loads(line) for line in lines if line.strip()]
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    ids = {s["context"]["span_id"] for s in spans}
    for s in sorted(spans, key=lambda s: s["start_time"]):
        parent = s["parent_id"] if s["parent_id"] in ids else None
        children[parent].append(s)
    keep = (
        "pulling_agent.attempt",
        "pulling_agent.outcome",
        "error.type",
        "pulling_agent.queue.wait_seconds",
        "messaging.batch.message_count",
    )

    def walk(span: dict[str, Any], depth: int) -> None:
        said = {
            k.removeprefix("pulling_agent.").removeprefix("messaging."): v
            for k, v in span["attributes"].items()
            if k in keep
        }
        if span["links"]:
            said["links"] = len(span["links"])
        status = span["status"].get("description")
        took = datetime.fromisoformat(span["end_time"]) - datetime.fromisoformat(span["start_time"])
        print(
            f"{'  ' * depth}{span['name']}  [{span['resource']['attributes']['service.name']}]"
            f"  trace {span['context']['trace_id'][2:10]}…  {took.total_seconds() * 1000:.1f} ms"
            + (f"  {said}" if said else "")
            + (f"  ERROR: {status}" if status else "")
        )
        for child in children[span["context"]["span_id"]]:
            walk(child, depth + 1)

    for root in children[None]:
        walk(root, 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["show"]:
        show(sys.argv[2:])
    else:
        set_up("signup-api")
        send(sys.argv[2] if len(sys.argv) > 2 else "a@example.com")
else:
    set_up("pulling-agent")  # loaded by the agent as its HANDLER
