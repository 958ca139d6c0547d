"""The ``pulling-agent`` command: the root app, with each command group registered from
its own module (run, queue, doctor, ctl, jobs)."""

from __future__ import annotations

from typing import Annotated

import typer

from pulling_agent.cli import ctl, doctor, jobs, queue, run

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
) -> None:
    if version:
        from pulling_agent import __version__

        typer.echo(f"pulling-agent {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


for group in (run, queue, doctor, ctl, jobs):  # the order of `pulling-agent --help`
    group.register(app)


def main() -> None:
    app(prog_name="pulling-agent")
