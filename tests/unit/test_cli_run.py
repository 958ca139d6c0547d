"""``pulling-agent run``, ``demo``, ``health`` and the root command in process (typer's
CliRunner): options checked before anything starts, one line and exit 2 for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulling_agent import __version__
from tests.conftest import invoke

ENV: dict[str, str | None] = {
    "MONGODB_URI": "mongodb://127.0.0.1:1/",
    "MONGODB_DATABASE": "d",
    "MONGODB_COLLECTION": "c",
    "HANDLER": None,
    "HANDLERS": None,
}


def test_version_and_the_commands_in_order() -> None:
    assert invoke(ENV, "--version").stdout.strip() == f"pulling-agent {__version__}"
    shown = invoke({**ENV, "COLUMNS": "200"}, "--help").stdout
    order = ["run", "demo", "health", "cancel", "enqueue", "get", "doctor", "dlq", "ctl", "jobs"]
    positions = [shown.index(f" {name} ") for name in order]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    "args",
    [["--documents", "0"], ["--documents", "-5"], ["--agents", "0"]],
)
def test_demo_validates_its_options(args: list[str]) -> None:
    result = invoke(ENV, "demo", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value" in result.stderr


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({}, ["run"], "HANDLER is required"),
        ({"HANDLER": "m:f"}, ["run", "somewhere"], "only for --embedded"),
        ({"HANDLER": "m:f", "BATCH_SIZE": "lots"}, ["run"], "BATCH_SIZE"),
        ({"HANDLER": "no_such_module_here:f"}, ["run"], "cannot import"),
        ({"HANDLER": "m:f", "JOBS_FILE": "/nonexistent/jobs.yaml"}, ["run"], "JOBS_FILE"),
        ({"HANDLERS": "email=m:f", "TYPE_CONCURRENCY": "email"}, ["run"], "TYPE_CONCURRENCY:"),
        ({"HANDLERS": "email=m:f", "TYPE_RATE_LIMIT": "x"}, ["run"], "TYPE_RATE_LIMIT:"),
    ],
)
def test_run_refuses_bad_settings_with_one_line_and_exit_2(
    env: dict[str, str], args: list[str], says: str
) -> None:
    result = invoke({**ENV, **env}, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_health_reports_a_missing_agent(tmp_path: Path) -> None:
    result = invoke(ENV, "health", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.strip()


def test_a_broken_jobs_file_says_where_in_readable_words(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  - id: a\n    func: json:dumps\n   trigger: [\n")
    result = invoke({**ENV, "HANDLER": "json:dumps", "JOBS_FILE": str(jobs)}, "run")
    assert result.returncode == 2
    assert "not valid YAML at line 4, column 4" in result.stderr
    assert "\\x0a" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
