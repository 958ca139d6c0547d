"""Hostile strings through every output path: escape sequences, markup, newlines that
forge lines, bidi overrides. None may reach a terminal, a log line or a health file as
anything but inert text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import structlog
from rich.console import Console

from pulling_agent.cli.ctl import render_status
from pulling_agent.config import LogFormat
from pulling_agent.logs import configure_logging, get_logger
from pulling_agent.runtime.health import LIVENESS, HealthFiles, check
from tests.deploy.test_scripts import run_health_check

HOSTILE = (
    "\x1b]0;pwned\x07\x1b[2J[bold red]markup[/bold red]\nstate=running\nready=yes"
    "\u202eevil\x1b]8;;http://evil.example\x07link\x1b]8;;\x07\r\x00\x9b31m"
)
RAW = ("\x1b", "\x07", "\x00", "\x9b", "\u202e", "\r")


def assert_inert(text: str) -> None:
    for raw in RAW:
        assert raw not in text, repr(raw)


def test_ctl_status_shows_hostile_values_inertly() -> None:
    agent = {
        "agent_id": HOSTILE,
        "state": HOSTILE,
        "paused_by": [{"source": "api", "reason": HOSTILE, "by": HOSTILE}, "not a dict"],
        "version_seen": HOSTILE,
        "counters": {"processed": HOSTILE},
        "throughput_per_min": "lots",
        "heartbeat_at": HOSTILE,
    }
    status = {
        "control": {"command": HOSTILE, "version": 3, "reason": HOSTILE, "updated_by": HOSTILE},
        "stats": {"agents": [agent], "backlog": {HOSTILE: 1}, "fleet_throughput_per_min": 0},
    }
    out = io.StringIO()
    Console(file=out, width=400, force_terminal=True, color_system=None).print(
        render_status(status)
    )
    text = out.getvalue()
    assert_inert(text.replace("\x1b[", ""))  # rich's own styling aside
    assert "[bold red]markup[/bold red]" in text, "markup shown, not interpreted"
    assert "1 live agent " in text or "1 live agent\n" in text
    assert "0.0/min" in text


def test_the_health_file_holds_one_line_per_field(tmp_path: Path) -> None:
    health = HealthFiles(tmp_path)
    health.prepare()
    health.write("paused", False, {"paused_by": HOSTILE, HOSTILE: 1})
    lines = (tmp_path / LIVENESS).read_text().splitlines()
    assert len(lines) == 4
    assert lines[0] == "paused"
    assert not any(line.startswith(("state=", "ready=")) for line in lines)
    assert_inert("\n".join(lines))
    assert check(tmp_path, 30).state == "paused"
    script = run_health_check(tmp_path)
    assert "state=paused ready=no" in script.stdout
    assert "\nready=yes" not in script.stdout
    assert_inert(script.stdout)


@pytest.mark.parametrize("fmt", [LogFormat.JSON, LogFormat.CONSOLE])
def test_logs_carry_hostile_values_inertly(fmt: LogFormat) -> None:
    out = io.StringIO()
    configure_logging("INFO", fmt, [], stream=out)
    try:
        log = get_logger(agent_id=HOSTILE)
        log.warning(HOSTILE, doc_id=HOSTILE, error=HOSTILE)
        try:
            raise ValueError(HOSTILE)
        except ValueError:
            log.exception("failed")
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert_inert(text)
    assert not any(line.startswith(("state=", "ready=")) for line in text.splitlines())
