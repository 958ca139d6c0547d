"""``pulling-agent health``, the exec probe, without the CLI stack.

Kubernetes runs the probe every few seconds in every pod: it must cost next to nothing.
This module parses the same options as the documented command (``--max-age``, ``--ready``,
``--dir``) with the standard library and imports only :mod:`pulling_agent.runtime.health`; the
full CLI (typer, rich, pydantic, pymongo) is never loaded. ``--help`` goes to the full CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pulling_agent.runtime.health import DEFAULT_DIR, check


def main(argv: list[str]) -> int:
    """Exit 0 when alive (and ready, with ``--ready``), 1 when not, 2 on bad options."""
    parser = argparse.ArgumentParser(prog="pulling-agent health", add_help=False)
    parser.add_argument("--max-age", type=float, default=30.0)
    parser.add_argument("--ready", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    try:
        options = parser.parse_args(argv)
    except SystemExit:
        return 2
    where = options.dir or Path(os.environ.get("HEALTH_DIR", DEFAULT_DIR))
    report = check(where, options.max_age, require_ready=options.ready)
    sys.stdout.write(report.message + "\n")
    return 0 if report.healthy else 1
