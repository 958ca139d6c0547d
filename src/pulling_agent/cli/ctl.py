"""``pulling-agent ctl``: fleet control from a shell, through an agent's API or, with
``--mongodb-uri``, straight through MongoDB when no agent is reachable."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from pulling_agent.cli.options import DEFAULT_URL, AsJson, MongoUri, Token, Url
from pulling_agent.cli.remote import CtlError, Direct, direct, http, identity
from pulling_agent.cli.terminal import console, echo_json
from pulling_agent.control.cluster import ClusterCommand
from pulling_agent.fleet.registry import offset_text
from pulling_agent.text import cell, one_line, print_error

app = typer.Typer(help="Pause, resume or shut down the fleet; show its status.")

Reason = Annotated[str, typer.Option(help="Why; recorded in the audit trail.")]
Wait = Annotated[
    float, typer.Option(help="Seconds to wait until every live agent has acknowledged.")
]


def _command(
    command: ClusterCommand, reason: str, wait: float, url: str, token: str | None, uri: str | None
) -> dict[str, Any]:
    if uri:
        return direct(
            lambda d: d.cluster.command(command, reason, identity(), "", wait or None), uri
        )
    result: dict[str, Any] = http(
        "POST",
        url,
        f"/api/cluster/{command.value}",
        token,
        reason=reason,
        updated_by=identity(),
        wait=wait or None,
    )
    return result


def _run_command(
    command: ClusterCommand,
    reason: str,
    wait: float,
    url: str,
    token: str | None,
    uri: str | None,
    as_json: bool,
) -> None:
    try:
        result = _command(command, reason, wait, url, token, uri)
    except CtlError as exc:
        print_error(f"pulling-agent ctl: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        echo_json(result)
        return
    control = result["control"]
    typer.echo(
        f"cluster {control['command']} issued: version {control['version']} "
        f"by {control['updated_by']}"
    )
    acks = result.get("acks")
    if acks is not None:
        for label, key in (("acknowledged by", "acknowledged"), ("stopped", "stopped")):
            names = acks.get(key) or []
            if names or key == "acknowledged":
                typer.echo(one_line(f"{label} {len(names)}: {', '.join(names) or '-'}", 2_000))
        ignored = acks.get("ignored") or []
        for entry in ignored:
            typer.echo(one_line(f"IGNORED by {entry.get('agent')}: {entry.get('reason')}", 2_000))
        if ignored and not acks["pending"]:
            raise typer.Exit(1)
        if acks["pending"]:
            pending = ", ".join(acks["pending"])
            typer.echo(one_line(f"NOT acknowledged by {len(acks['pending'])}: {pending}", 2_000))
            if acks.get("hint"):
                typer.echo(one_line(acks["hint"], 500))
            raise typer.Exit(1)


def _register(command: ClusterCommand, summary: str) -> None:
    def cluster_command(
        reason: Reason = "",
        wait: Wait = 0,
        url: Url = DEFAULT_URL,
        token: Token = None,
        mongodb_uri: MongoUri = None,
        as_json: AsJson = False,
    ) -> None:
        _run_command(command, reason, wait, url, token, mongodb_uri, as_json)

    cluster_command.__doc__ = summary
    app.command(command.value)(cluster_command)


for _cluster_command, _summary in (
    (ClusterCommand.PAUSE, "Pause every agent (in-flight work finishes first)."),
    (ClusterCommand.RESUME, "Withdraw the cluster's pause."),
    (
        ClusterCommand.SHUTDOWN,
        "Stop every running agent; agents started later stay paused until a resume.",
    ),
):
    _register(_cluster_command, _summary)


def _fetch_status(url: str, token: str | None, uri: str | None) -> dict[str, Any]:
    if uri:

        async def both(d: Direct) -> dict[str, Any]:
            return {"control": await d.cluster.control_state(), "stats": await d.cluster.stats()}

        return direct(both, uri)
    return {
        "control": http("GET", url, "/api/cluster/control-state", token),
        "stats": http("GET", url, "/api/cluster/stats", token),
    }


def _when(stamp: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _age(stamp: Any, now: datetime) -> str:
    when = _when(stamp)
    return "?" if when is None else f"{(now - when).total_seconds():.0f}s"


def render_status(status: dict[str, Any]) -> Group:
    """The fleet as tables. Every value is shown as one inert line: pause reasons, agent
    ids and commands come from documents anyone may have written."""
    control, stats = status["control"], status["stats"]
    head = Table.grid(padding=(0, 2))
    rows = [
        ("cluster command", f"{control.get('command') or '-'} (version {control.get('version')})"),
        ("issued by", f"{control.get('updated_by') or '-'} at {control.get('timestamp') or '-'}"),
        ("reason", control.get("reason") or "-"),
        (
            "backlog",
            ", ".join(f"{k} {v}" for k, v in sorted((stats.get("backlog") or {}).items())) or "-",
        ),
        ("fleet throughput", _per_minute(stats.get("fleet_throughput_per_min"))),
    ]
    for name, value in rows:
        head.add_row(name, cell(value))
    now = _when(stats.get("now")) or datetime.now(UTC)  # ages on MongoDB's clock
    live = len(stats.get("agents") or [])
    agents = Table(title=f"{live} live agent{'' if live == 1 else 's'}")
    for column in (
        "agent",
        "state",
        "paused by",
        "version",
        "processed",
        "failed",
        "in flight",
        "per min",
        "heartbeat",
        "clock",
    ):
        agents.add_column(column)
    for a in stats.get("agents") or []:
        holders = "; ".join(
            f"{p.get('source')}: {p.get('reason')} ({p.get('by')})"
            for p in a.get("paused_by") or []
            if isinstance(p, dict)
        )
        counters = a.get("counters") or {}
        agents.add_row(
            *(
                cell(v)
                for v in (
                    a.get("agent_id"),
                    a.get("state"),
                    holders or "-",
                    a.get("version_seen"),
                    counters.get("processed", 0),
                    counters.get("failed", 0),
                    a.get("in_flight", 0),
                    _per_minute(a.get("throughput_per_min"), unit=""),
                    _age(a.get("heartbeat_at"), now),
                    offset_text(a.get("clock_offset_seconds")),
                )
            )
        )
    return Group(head, agents)


def _per_minute(value: Any, unit: str = "/min") -> str:
    try:
        return f"{float(value):.1f}{unit}"
    except (TypeError, ValueError):
        return "-"


@app.command()
def status(
    url: Url = DEFAULT_URL,
    token: Token = None,
    mongodb_uri: MongoUri = None,
    watch: Annotated[bool, typer.Option(help="Refresh every 2 s until Ctrl-C.")] = False,
    as_json: AsJson = False,
) -> None:
    """The cluster command, the live agents (who holds each paused, and why), the backlog."""
    shown = console(fit_pipe=True)
    try:
        if as_json:
            echo_json(_fetch_status(url, token, mongodb_uri))
            return
        if not watch:
            shown.print(render_status(_fetch_status(url, token, mongodb_uri)))
            return
        with Live(console=shown, refresh_per_second=1) as live:
            while True:
                live.update(render_status(_fetch_status(url, token, mongodb_uri)))
                time.sleep(2)
    except CtlError as exc:
        print_error(f"pulling-agent ctl: {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        return


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="ctl")
