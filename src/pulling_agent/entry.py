"""The ``pulling-agent`` console script: capture signals first, then load the CLI."""

import sys

from pulling_agent.early_signals import capture


def main() -> None:
    if sys.argv[1:2] == ["run"]:
        capture()
    from pulling_agent.cli import main as cli_main

    cli_main()
