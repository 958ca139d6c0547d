"""The ``pulling-agent`` console script: capture signals first, then load the CLI."""

import sys

from pulling_agent.runtime.signals import capture


def main() -> None:
    if sys.argv[1:2] == ["health"] and not {"--help", "-h"} & set(sys.argv[2:]):
        from pulling_agent.cli.probe import main as probe  # the probe: no CLI stack

        sys.exit(probe(sys.argv[2:]))
    if sys.argv[1:2] == ["run"]:
        capture()
    from pulling_agent.cli.main import main as cli_main

    cli_main()
