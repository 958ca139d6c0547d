"""The health probe: the documented command and exit codes, without the CLI stack.

Kubernetes runs it every few seconds in every pod; importing the CLI made each call cost
0.5 CPU-seconds (measured; docs/OPERATIONS.md). The import test keeps that from coming
back: it fails as soon as the probe path loads any of the heavy packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulling_agent.runtime.health import HealthFiles

HEAVY = ("typer", "rich", "pydantic", "pymongo", "fastapi", "structlog", "yaml", "uvicorn")
ENTRY = (
    "import sys; from pulling_agent.cli.entry import main; sys.argv[0] = 'pulling-agent'; main()"
)


def probe(*args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, "-c", ENTRY, "health", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HEALTH_DIR": "/nonexistent"},
    )


def test_the_probe_imports_none_of_the_cli_stack(tmp_path: Path) -> None:
    HealthFiles(tmp_path).write("running", True, {})
    result = probe("--dir", str(tmp_path), importtime=True)
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert "pulling_agent" in imported, "the probe ran through the console script's entry"
    assert sorted(imported & set(HEAVY)) == []


@pytest.mark.parametrize(
    ("state", "ready", "unhealthy", "args", "code", "says"),
    [
        ("running", True, None, ["--ready"], 0, "running"),
        ("paused", False, None, [], 0, "paused"),
        ("paused", False, None, ["--ready"], 1, "not ready"),
        ("running", True, "8 handler threads abandoned", [], 1, "unhealthy"),
        ("running", True, None, ["--max-age", "-1"], 1, "old"),
        ("running", True, None, ["--max-age", "soon"], 2, ""),
    ],
)
def test_exit_codes_and_messages(
    tmp_path: Path,
    state: str,
    ready: bool,
    unhealthy: str | None,
    args: list[str],
    code: int,
    says: str,
) -> None:
    HealthFiles(tmp_path).write(state, ready, {}, unhealthy=unhealthy)
    result = probe("--dir", str(tmp_path), *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stdout


def test_no_liveness_file_is_unhealthy_and_help_still_works(tmp_path: Path) -> None:
    missing = probe("--dir", str(tmp_path / "none"))
    assert missing.returncode == 1 and "no liveness file" in missing.stdout
    assert probe("--max-age", "30").returncode == 1, "HEALTH_DIR from the environment"
    helped = probe("--help")
    assert helped.returncode == 0 and "--max-age" in helped.stdout
