"""The queue from a shell: ``enqueue``, ``get``, ``cancel``, and the dead letter (``dlq list``,
``dlq requeue``), on the work collection of ``MONGODB_URI``."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pulling_agent.cli.options import command_jobs, fail, settings
from pulling_agent.cli.remote import identity, with_store
from pulling_agent.cli.terminal import (
    echo_json,
    error_summary,
    id_column,
    short_time,
    show,
    table,
    value_text,
)
from pulling_agent.encoding import id_candidates, to_json
from pulling_agent.errors import InvalidJob
from pulling_agent.text import cell, print_error, safe_text

if TYPE_CHECKING:
    from pulling_agent.client.jobs import Enqueued
    from pulling_agent.queue.mongo import MongoWorkStore

dlq = typer.Typer(help="The dead letter: documents that failed MAX_ATTEMPTS times.")

SHOWN = (
    "status",
    "attempts",
    "available_at",
    "lease",
    "limit_slot",
    "key_slot",
    "progress",
    "processed_at",
    "failed_at",
    "cancelled_at",
    "cancel_reason",
    "cancel_requested",
    "result",
    "result_error",
    "error",
    "after",
    "waiting",
    "on_dependency_failure",
    "batch_id",
    "batch progress",
)


@dlq.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="At most this many documents.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document per line.")] = False,
    cancelled: Annotated[
        bool, typer.Option("--cancelled", help="List documents a handler skipped instead.")
    ] = False,
) -> None:
    """List failed documents with their last error (or, with --cancelled, skipped ones)."""

    async def action(store: MongoWorkStore) -> list[dict[str, Any]]:
        if cancelled:
            cursor = store.collection.find(
                {"status": "cancelled"}, sort=[("cancelled_at", 1)], limit=limit
            )
            found: list[dict[str, Any]] = await cursor.to_list(length=limit)
            for doc in found:  # shown like a failure: the reason in the error column
                doc.setdefault("error", {"type": "cancelled", "message": doc.get("cancel_reason")})
                doc.setdefault("failed_at", doc.get("cancelled_at"))
            return found
        return await store.list_failed(limit)

    docs = with_store(action)
    if as_json:
        for doc in docs:
            echo_json(to_json(doc))
        return
    title = "Cancelled" if cancelled else "Dead letter"
    shown = table(f"{title} ({len(docs)} shown)")
    id_column(shown, [doc.get("_id") for doc in docs])
    when_column = "cancelled_at" if cancelled else "failed_at"
    for column in ("attempts", when_column, "reason" if cancelled else "error"):
        shown.add_column(column)
    for doc in docs:
        shown.add_row(
            cell(doc.get("_id"), 10_000),
            cell(doc.get("attempts", "")),
            cell(short_time(doc.get(when_column))),
            cell(
                safe_text(doc.get("cancel_reason") or "")
                if cancelled
                else error_summary(doc.get("error")),
                120,
            ),
        )
    show(shown)


@dlq.command("requeue")
def dlq_requeue(
    ids: Annotated[list[str] | None, typer.Argument(help="_id values to requeue.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Requeue every failed document.")] = False,
    with_dependents: Annotated[
        bool,
        typer.Option(
            help="Also bring back the documents their failure cancelled (enqueued with "
            "--after), waiting again."
        ),
    ] = False,
) -> None:
    """Put failed documents back to pending, attempts reset. Documents their failure
    cancelled stay cancelled unless --with-dependents."""
    if bool(ids) == all_:
        raise fail("give document ids or --all (not both)")
    wanted = {raw: id_candidates(raw) for raw in ids or []}

    async def action(store: MongoWorkStore) -> tuple[int, list[str], int]:
        candidates = [c for options in wanted.values() for c in options]
        query = {"status": "failed"} if all_ else {"_id": {"$in": candidates}, "status": "failed"}
        failed = [doc["_id"] async for doc in store.collection.find(query, {"_id": 1})]
        found = {repr(doc_id) for doc_id in failed}
        missing = [raw for raw, options in wanted.items() if not found & {repr(c) for c in options}]
        count: int = await store.requeue(None if all_ else candidates) if found else 0
        revived = await store.revive_dependents(failed, store.clock()) if with_dependents else 0
        return count, missing, revived

    count, missing, revived = with_store(action)
    shown: dict[str, Any] = {"requeued": count, "not_failed": missing}
    if with_dependents:
        shown["dependents_waiting_again"] = revived
    echo_json(shown)
    if missing:
        print_error(
            f"pulling-agent: no failed document has the _id {', '.join(map(repr, missing))} "
            "(see pulling-agent dlq list)"
        )
        raise typer.Exit(1)


def cancel(
    ids: Annotated[list[str], typer.Argument(help="_id values of the documents to cancel.")],
) -> None:
    """Cancel documents: a pending one at once (status cancelled), a processing one by
    request (its agent cancels the handler at its next lease renewal). Exit 1 if an id
    matches no pending or processing document."""
    from pulling_agent.fleet.service import cancel_by_raw_ids

    by = identity()

    async def action(store: MongoWorkStore) -> dict[str, list[str]]:
        return await cancel_by_raw_ids(store, ids, by, store.clock())

    result = with_store(action)
    echo_json(result)
    if result["not_found"]:
        print_error(
            f"pulling-agent: not pending or processing: {', '.join(map(repr, result['not_found']))}"
        )
        raise typer.Exit(1)


def enqueue(
    payload: Annotated[
        str,
        typer.Argument(
            help="The document as a JSON object (Extended JSON), or - to read JSON lines "
            "(one document each) from stdin."
        ),
    ] = "{}",
    key: Annotated[
        str | None, typer.Option(help="Idempotency key: the same key twice is one document.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--type", help="Set TYPE_FIELD, for routing (HANDLERS).")
    ] = None,
    delay: Annotated[
        str | None, typer.Option(help="Due after this long: 90, 30s, 5m, 2h, 1d.")
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="0 to 1000000; higher fresh documents are claimed first.")
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only after the document with this _id is processed (repeatable). "
            "If it fails or is cancelled, this one is cancelled."
        ),
    ] = None,
    run_anyway: Annotated[
        bool,
        typer.Option(help="With --after: run even if a dependency fails or is cancelled."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per document: _id, created, key.")
    ] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0,
            max=86_400,
            help="Then wait up to this many seconds for the documents' outcomes and print "
            "each result as JSON. Exit 1 if one failed, was cancelled or kept no result; "
            "3 if time ran out first.",
        ),
    ] = None,
) -> None:
    """Put documents in the queue. Prints each _id and whether it is new (a --key seen
    before names the document that has it). Exit 2 on invalid input, nothing written.
    With TRACEPARENT set (a W3C trace context), the documents join that trace."""
    from pulling_agent.client.aio import enqueue_many
    from pulling_agent.queue import tracecontext

    loaded = settings()
    if run_anyway and not after:
        raise fail("--run-anyway goes with --after")
    try:
        text = sys.stdin.read() if payload == "-" else None
        jobs = command_jobs(
            payload,
            text,
            key=key,
            kind=kind,
            delay=delay,
            priority=priority,
            type_field=loaded.type_field,
            on_dependency_failure="run" if run_anyway else "cancel",
        )
    except InvalidJob as exc:
        raise fail(str(exc)) from None

    async def action(store: MongoWorkStore) -> list[Enqueued]:
        if after:
            ids = await _existing_ids(store, after)
            jobs[:] = [replace(job, after=ids) for job in jobs]
        return await enqueue_many(store.collection, jobs, type_field=loaded.type_field)

    try:
        # inside the trace a caller passes in TRACEPARENT: the documents carry it
        with tracecontext.from_environment(os.environ):
            results = with_store(action, loaded)  # a refusal by MongoDB: one line, exit 1
    except InvalidJob as exc:
        raise fail(str(exc)) from None
    except tracecontext.BadTraceContext as exc:
        raise fail(f"{exc}: unset TRACEPARENT, or give 00-<32 hex>-<16 hex>-<2 hex>") from None
    for result in results:
        if as_json:
            echo_json(to_json({"_id": result.id, "created": result.created, "key": result.key}))
        else:
            state = "enqueued" if result.created else "already there"
            typer.echo(safe_text(f"{state}: {to_json(result.id)}", 300))
    if wait is not None:
        _print_results([r.id for r in results], wait, loaded)


def _print_results(ids: list[Any], seconds: float, loaded: Any) -> None:
    """``enqueue --wait``: each document's result as one JSON line, in order; the exit code
    from the outcomes (1: one did not end with a result, 3: time ran out)."""
    import time

    from pulling_agent.client.aio import WaitError, WaitTimeout
    from pulling_agent.client.aio import wait as result_of

    deadline = time.monotonic() + seconds

    async def action(store: MongoWorkStore) -> list[tuple[Any, Any]]:
        ended: list[tuple[Any, Any]] = []
        for doc_id in ids:
            left = max(0.0, deadline - time.monotonic())
            try:
                ended.append((doc_id, await result_of(store.collection, doc_id, left)))
            except WaitError as exc:
                ended.append((doc_id, exc))
        return ended

    code = 0
    for doc_id, value in with_store(action, loaded):
        if isinstance(value, WaitError):
            print_error(f"pulling-agent: {value}")
            code = max(code, 3 if isinstance(value, WaitTimeout) else 1)
        else:
            echo_json(to_json({"_id": doc_id, "result": value}))
    if code:
        raise typer.Exit(code)


async def _existing_ids(store: MongoWorkStore, raws: list[str]) -> list[Any]:
    """The ``_id`` each ``--after`` value names (a string, an ObjectId hex or an integer);
    :class:`InvalidJob` when one names no document, or more than one."""
    wanted = {raw: id_candidates(raw) for raw in raws}
    candidates = [c for options in wanted.values() for c in options]
    cursor = store.collection.find({"_id": {"$in": candidates}}, {"_id": 1})
    found = [doc["_id"] async for doc in cursor]
    ids = []
    for raw, options in wanted.items():
        matches = [f for f in found if any(f == o and not isinstance(f, bool) for o in options)]
        if len(matches) != 1:
            problem = "no document has" if not matches else "several documents have"
            raise InvalidJob(f"--after {safe_text(raw, 60)!r}: {problem} this _id")
        ids.append(matches[0])
    return ids


def get(
    doc_id: Annotated[str, typer.Argument(help="The _id (string, ObjectId hex or integer).")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole document as JSON.")] = False,
) -> None:
    """Show one work document as the agents see it: status, attempts, lease, progress,
    the last error and the error history, and why agents would never process it (if so).
    Exit 1 when no document has this id."""
    from pulling_agent.queue import tracecontext
    from pulling_agent.queue.documents import diagnose
    from pulling_agent.queue.limits import limits_of, waiting_for
    from pulling_agent.queue.waits import progress, shape_problems

    loaded = settings()
    read_at: list[datetime] = []  # MongoDB's time when the document was read
    slots: list[str] = []  # the fleet-wide limits it waits for (as this environment sets them)

    async def action(store: MongoWorkStore) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await store.collection.find_one(
            {"_id": {"$in": id_candidates(doc_id)}}
        )
        read_at.append(store.clock())
        if found is not None:
            slots.extend(await waiting_for(store.collection, limits_of(loaded), found))
        if found is not None and isinstance(found.get("batch_id"), str):
            then = await store.collection.find_one({"batch.id": found["batch_id"]})
            found["batch progress"] = "no then document" if then is None else progress(then)
        return found

    doc = with_store(action, loaded)
    if doc is None:
        print_error(f"pulling-agent: no document has the _id {doc_id!r}")
        raise typer.Exit(1)
    problems = diagnose(doc, read_at[0], loaded.max_attempts)
    if doc.get("status") == "waiting":
        problems += shape_problems(doc)
    if "batch" in doc:
        doc["batch progress"] = progress(doc)
    if as_json:
        whole = to_json(doc)
        whole["problems"] = [{"field": p.field, "reason": p.reason, "fix": p.fix} for p in problems]
        whole["waiting_for"] = slots
        whole["trace"] = tracecontext.trace_link(doc.get(tracecontext.TRACE), loaded.trace_url)
        typer.echo(json.dumps(whole))
        return
    shown = table(cell(f"document {doc_id}"))
    shown.show_header = False
    shown.add_column("field")
    shown.add_column("value", overflow="fold")
    for name in SHOWN:
        if name == "error" and isinstance(doc.get("error"), dict):
            shown.add_row(name, cell(error_summary(doc["error"]), 600))
        elif name in doc:
            shown.add_row(name, cell(value_text(doc[name]), 600))
    errors = doc.get("errors")
    if isinstance(errors, list) and errors:
        shown.add_row("errors", cell(f"{len(errors)} recorded (--json shows them)"))
    link = tracecontext.trace_link(doc.get(tracecontext.TRACE), loaded.trace_url)
    if link is not None:
        shown.add_row("trace", cell(link.get("url", link["id"]), 2_100))
    for slot in slots:
        shown.add_row("waiting for", cell(slot, 300))
    for problem in problems:
        shown.add_row(cell(f"problem: {problem.field}"), cell(f"{problem.reason}; {problem.fix}"))
    show(shown)


def register(root: typer.Typer) -> None:
    for command in (cancel, enqueue, get):
        root.command()(command)
    root.add_typer(dlq, name="dlq")
