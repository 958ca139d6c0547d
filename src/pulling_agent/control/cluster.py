"""The cluster control document and what an agent does about it. Pure, no I/O.

``{_id: "global_control", command, version, timestamp, reason, updated_by, note}`` in the
``agent_control`` collection. ``version`` grows with every command (and with a manual
``$inc``), so agents act on each version once.

A usable version is a whole number from 1 to ``MAX_VERSION`` (an integral double too, as
shells write numbers). Anything else (missing, text, a fraction, negative, or beyond
``MAX_VERSION`` like a hand-written ``2**53 - 1``) makes the document *malformed*: agents
log it once and never apply it, and writers issue the next command above every usable
version they know of, so one bad edit cannot wedge the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pulling_agent.text import safe_text

CONTROL_ID = "global_control"


class ClusterCommand(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    SHUTDOWN = "shutdown"


MAX_VERSION = 2**31 - 1  # two billion commands; far below where doubles lose integers


def version_problem(value: Any) -> str:
    """Why ``value`` is not a usable version ("" when it is one)."""
    if value is None:
        return "it has no version (hand-edited? issue commands with pulling-agent ctl or the API)"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"its version is {type(value).__name__}, not a whole number"
    if isinstance(value, float) and not value.is_integer():
        return f"its version {safe_text(value, 40)} is not a whole number"
    if not 1 <= value <= MAX_VERSION:
        return f"its version {safe_text(value, 40)} is outside 1..{MAX_VERSION}"
    return ""


def valid_version(doc: dict[str, Any] | None) -> int:
    """The document's ``version`` if it is usable, else 0."""
    version = None if doc is None else doc.get("version")
    return 0 if version_problem(version) else int(version)  # type: ignore[arg-type]


def reported_version(value: Any) -> int:
    """A version an agent reports (``version_seen``) if usable, else 0."""
    return 0 if version_problem(value) else int(value)


@dataclass(frozen=True, slots=True)
class ControlState:
    command: str  # as stored; may be something this version does not understand
    version: int
    timestamp: datetime | str | None
    reason: str
    updated_by: str
    note: str = ""
    problem: str = ""  # why the version is unusable (the document is then never applied)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ControlState:
        return cls(
            command=safe_text(doc.get("command", ""), 200),
            version=valid_version(doc),
            problem=version_problem(doc.get("version")),
            timestamp=doc.get("timestamp"),
            reason=safe_text(doc.get("reason") or "", 500),
            updated_by=safe_text(doc.get("updated_by") or "", 200),
            note=safe_text(doc.get("note") or "", 500),
        )

    def identity(self) -> tuple[int, str, str, str, str, str]:
        """What makes two readings the same command (the timestamp's precision may differ:
        MongoDB keeps milliseconds)."""
        return (self.version, self.command, self.reason, self.updated_by, self.note, self.problem)

    def as_dict(self) -> dict[str, Any]:
        stamp = (
            self.timestamp.isoformat() if isinstance(self.timestamp, datetime) else self.timestamp
        )
        shown = {
            "command": self.command,
            "version": self.version,
            "timestamp": stamp,
            "reason": self.reason,
            "updated_by": self.updated_by,
            "note": self.note,
        }
        if self.problem:
            shown["problem"] = f"ignored by every agent: {self.problem}"
        return shown


class Action(StrEnum):
    HOLD_PAUSE = "hold_pause"  # the cluster source asks for a pause
    RELEASE = "release"  # the cluster source withdraws its pause
    SHUTDOWN = "shutdown"  # stop this agent (exit 0)
    IGNORE = "ignore"  # a value this agent does not understand: log and keep state


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str


def decide(state: ControlState, at_startup: bool) -> Decision:
    """What an agent does with the control document.

    A ``shutdown`` stops agents that were running when it was issued. An agent that
    *starts* under a standing ``shutdown`` holds a pause instead and says why: otherwise
    Kubernetes would restart it into a crash loop.
    """
    try:
        command = ClusterCommand(state.command.strip().lower())
    except ValueError:
        return Decision(Action.IGNORE, f"unknown cluster command {state.command[:40]!r}")
    if command is ClusterCommand.PAUSE:
        return Decision(Action.HOLD_PAUSE, state.reason or "cluster pause")
    if command is ClusterCommand.RESUME:
        return Decision(Action.RELEASE, state.reason)
    if at_startup:
        return Decision(
            Action.HOLD_PAUSE,
            f"cluster shutdown v{state.version} is standing; resume the cluster to process",
        )
    return Decision(Action.SHUTDOWN, state.reason or "cluster shutdown")
