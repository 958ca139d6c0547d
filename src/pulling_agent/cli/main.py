"""The ``pulling-agent`` command: the root app, with each command group registered from
its own module (run, queue, doctor, ctl, jobs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pulling_agent.cli import ctl, doctor, jobs, queue, run
from pulling_agent.cli.options import fail

app = typer.Typer(
    help="Pull work documents from MongoDB, run a handler on each, record the outcome.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _options(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
    embedded: Annotated[
        Path | None,
        typer.Option(
            "--embedded",
            help="Development: reach the server 'pulling-agent run --embedded PATH' started "
            "(its address from PATH; database pulling_agent_dev, collection work, unless set).",
        ),
    ] = None,
) -> None:
    if version:
        from pulling_agent import __version__

        typer.echo(f"pulling-agent {__version__}")
        raise typer.Exit(0)
    if embedded is not None:
        _reach_embedded(embedded)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _reach_embedded(data: Path) -> None:
    """Point this command at the development server of ``data`` (its port file)."""
    from pulling_agent.dev.embedded import PORT_FILE

    try:
        port = int((data / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        raise fail(
            f"--embedded {data}: no development server has run there (start one: "
            f"pulling-agent run --embedded {data})"
        ) from None
    os.environ["MONGODB_URI"] = f"mongodb://127.0.0.1:{port}/"
    os.environ.setdefault("MONGODB_DATABASE", "pulling_agent_dev")
    os.environ.setdefault("MONGODB_COLLECTION", "work")


for group in (run, queue, doctor, ctl, jobs):  # the order of `pulling-agent --help`
    group.register(app)


def main() -> None:
    app(prog_name="pulling-agent")
