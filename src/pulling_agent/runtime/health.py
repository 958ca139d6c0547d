"""Liveness and readiness files for exec probes.

``liveness``: first line is the state name, then ``key=value`` lines (timestamp, counters).
It is rewritten every heartbeat, so its age tells whether the event loop is alive. A line
``unhealthy=<reason>`` says the process is alive but stuck (too many handler threads
abandoned past ``HANDLER_TIMEOUT``): the liveness probe fails so Kubernetes restarts it.
``readiness`` exists exactly while the agent can do its job. Writes are atomic (rename).
Every value is written as one inert line, whatever it holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pulling_agent.text import one_line

DEFAULT_DIR = "/tmp/health"  # noqa: S108 - the seed's documented path (HEALTH_DIR)
LIVENESS = "liveness"
UNHEALTHY = "unhealthy"
READINESS = "readiness"


class HealthFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        state: str,
        ready: bool,
        details: Mapping[str, object],
        unhealthy: str | None = None,
    ) -> None:
        """Rewrite liveness, then create or remove readiness to match ``ready``.

        Liveness always goes first, so whoever sees readiness change finds the reason
        (the state, ``store=unavailable since ...``) already written there. The two files
        are not changed atomically: a reader who checks both polls for the second.
        """
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = [
            one_line(state, 40),
            f"timestamp={stamp}",
            *(f"{one_line(k, 60)}={one_line(v, 300)}" for k, v in details.items()),
        ]
        if unhealthy is not None:
            lines.append(f"{UNHEALTHY}={one_line(unhealthy, 300)}")
        _atomic_write(self.directory / LIVENESS, "\n".join(lines) + "\n")
        readiness = self.directory / READINESS
        if ready:
            _atomic_write(readiness, f"{state}\ntimestamp={stamp}\n")
        else:
            readiness.unlink(missing_ok=True)

    def clear(self) -> None:
        for name in (READINESS, LIVENESS):
            (self.directory / name).unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    state: str
    message: str


def check(directory: Path, max_age: float, require_ready: bool = False) -> HealthReport:
    """What a probe needs: is the liveness file fresh (and, if asked, does readiness exist)?"""
    liveness = directory / LIVENESS
    try:
        age = time.time() - liveness.stat().st_mtime
        lines = liveness.read_text(encoding="utf-8", errors="replace").splitlines()
        state = one_line(lines[0].strip(), 40)
    except (OSError, IndexError):
        return HealthReport(False, "unknown", f"no liveness file at {liveness}")
    if age > max_age:
        return HealthReport(False, state, f"liveness is {age:.0f}s old (max {max_age:.0f}s)")
    for line in lines[1:]:
        key, _, reason = line.partition("=")
        if key == UNHEALTHY:
            return HealthReport(False, state, f"unhealthy: {reason}")
    if require_ready and not (directory / READINESS).exists():
        return HealthReport(False, state, f"not ready (state {state})")
    return HealthReport(True, state, f"{state}, liveness {age:.1f}s old")
