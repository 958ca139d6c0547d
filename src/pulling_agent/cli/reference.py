"""Render the command reference (docs/CLI-REFERENCE.md) from the commands themselves.

    python -m pulling_agent.cli.reference > docs/CLI-REFERENCE.md

A test keeps the committed file equal to this output, so the docs follow the code.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from pulling_agent.cli.main import app

PROG = "pulling-agent"


def _commands(command: Any, path: list[str], parent: Any) -> Iterator[tuple[list[str], Any, Any]]:
    """Every command under ``command`` in the order ``--help`` lists them (typer's click
    objects, typed loosely: typer carries its own copy of click)."""
    ctx = typer.Context(command, info_name=path[-1], parent=parent)
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, [*path, name], ctx)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


NAMES: dict[Any, str] = {str: "text", int: "integer", float: "number", bool: "flag", Path: "path"}


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and args:
        return _type_name(args[0])
    if origin is list and args:
        return f"{_type_name(args[0])}, repeatable"
    return NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _param(param: Any) -> str:
    if param.param_type_name == "option":
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    else:
        names = f"`{param.name.upper()}`"
    meaning = param.help or ""
    if param.envvar:
        meaning += f" Environment: `{param.envvar}`."
    kind = _type_name(param.type_descriptor.annotation)
    if param.min is not None or param.max is not None:
        kind += f" ({param.min if param.min is not None else ''} to {param.max or ''})".replace(
            "( to", "(up to"
        )
    empty = param.default in (None, "", (), False) or getattr(param, "is_flag", False)
    default = "" if empty else f"`{param.default}`"
    return f"| {names} | {kind} | {default} | {_cell(meaning)} |"


def render() -> str:
    from pulling_agent import __version__

    root = typer.main.get_command(app)
    lines = [
        "# Command reference",
        "",
        f"Generated from the commands of pulling-agent {__version__} "
        "(`python -m pulling_agent.cli.reference`); `pulling-agent COMMAND --help` prints "
        "the same. Settings come from the environment (README, `.env`); invalid input "
        "exits 2 with one line naming what to fix, an unreachable server or agent exits 1 "
        "with one line.",
        "",
    ]
    for path, command, ctx in _commands(root, [PROG], None):
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines += [f"## `{' '.join(path)} {usage}`".rstrip(), ""]
        lines += [inspect.cleandoc(command.help or ""), ""]
        params = [p for p in command.params if p.name != "help" and not p.hidden]
        if params:
            lines += ["| argument / option | type | default | meaning |", "|---|---|---|---|"]
            lines += [_param(p) for p in params]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
