"""``pulling-agent doctor``: documents the agents will never process as they stand, why, and
the fix; pending types no live agent claims; what keeps limited work from running."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from pulling_agent.cli.options import settings
from pulling_agent.cli.remote import with_store
from pulling_agent.cli.terminal import table
from pulling_agent.encoding import to_json
from pulling_agent.text import cell

if TYPE_CHECKING:
    from rich.console import Console

    from pulling_agent.queue.doctor import Examination
    from pulling_agent.queue.mongo import MongoWorkStore


def doctor(
    limit: Annotated[int, typer.Option(help="List at most this many documents.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """List documents the agents will never process as they stand, why, and the fix; and
    what keeps limited work from running (a type limit of 0, a slot nobody gives back,
    agents that disagree on a limit). Exit 0 when there is none, 1 when there is (or
    MongoDB cannot be read)."""
    from rich.console import Console

    from pulling_agent.fleet.registry import AgentRegistry, skewed
    from pulling_agent.queue import retention
    from pulling_agent.queue.doctor import examine, examine_limits, unserved_types
    from pulling_agent.queue.limits import limits_of

    loaded = settings()

    async def action(store: MongoWorkStore) -> Examination:
        result = await examine(store.collection, store.clock(), loaded.max_attempts, limit)
        db = store.collection.database
        registry = AgentRegistry(db[loaded.agents_collection], loaded.heartbeat_interval)
        live = await registry.live(store.clock())
        result.unserved = await unserved_types(store.collection, live, loaded.type_field)
        result.skewed = skewed(live)
        result.retention = await retention.current(store.collection)
        now, limits = store.clock(), limits_of(loaded)
        await examine_limits(result, store.collection, live, limits, now, loaded.lease_seconds)
        return result

    result = with_store(action, loaded)
    if as_json:
        typer.echo(json.dumps(to_json(result.as_dict())))
        raise typer.Exit(1 if result.troubled else 0)
    console = Console(highlight=False)
    console.print(retention_line(result.retention), markup=False)
    for agent_id, off in result.skewed.items():
        console.print(
            cell(
                f"agent {agent_id!r}: its node's clock is {abs(off):.1f} s "
                f"{'ahead of' if off > 0 else 'behind'} MongoDB's (the agent runs on MongoDB's "
                "time; fix the node: run NTP, e.g. chrony, on it)"
            )
        )
    for kind, count in result.unserved.items():
        console.print(
            cell(
                f"type {kind!r}: {count} pending document(s) that no live agent claims "
                f"(start an agent whose HANDLERS include it, or one without HANDLERS)"
            )
        )
    limit_lines(console, result)
    if not result.found and result.troubled:
        raise typer.Exit(1)
    if not result.found:
        console.print(f"No stuck documents among {result.scanned} unfinished.", markup=False)
        raise typer.Exit(0)
    findings = table(
        f"{result.found} of {result.scanned} unfinished documents will never be "
        "processed as they stand",
        "_id",
        "field",
        "problem",
        "fix",
        fold=True,
    )
    for finding in result.findings:
        for problem in finding.problems:
            findings.add_row(
                *(
                    cell(v, 200)
                    for v in (finding.doc_id, problem.field, problem.reason, problem.fix)
                )
            )
    console.print(findings)
    if result.found > len(result.findings):
        console.print(f"... and {result.found - len(result.findings)} more (--limit)", markup=False)
    raise typer.Exit(1)


def limit_lines(console: Console, result: Examination) -> None:
    """What ``doctor`` found about the fleet-wide limits, one line each."""
    for line in result.limit_disagreements:
        console.print(cell(line, 600))
    for kind, count in result.held_back.items():
        console.print(
            cell(
                f"type {kind!r}: {count} pending document(s) held back: its "
                "TYPE_FLEET_CONCURRENCY is 0 (give it a slot or more to run them)"
            )
        )
    for stale in result.stale_slots:
        console.print(
            cell(f"slot {stale.slot!r} ({stale.doc_id!r}): {stale.reason} ({stale.fix})", 600)
        )


def retention_line(kept: dict[str, float | None]) -> str:
    """``Retention: processed 7d, failed for ever, ...`` (what the TTL indexes say)."""
    from pulling_agent.queue.retention import kept_text

    shown = [f"{status} {kept_text(seconds)}" for status, seconds in kept.items()]
    return "Retention (finished documents kept): " + ", ".join(shown)


def register(root: typer.Typer) -> None:
    root.command()(doctor)
