"""The cluster control document and what an agent does about it. Pure, no I/O.

``{_id: "global_control", command, version, timestamp, reason, updated_by, note}`` in the
``agent_control`` collection. ``version`` grows by one with every command (and with a
manual ``$inc``), so agents act on each version once.
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


def valid_version(doc: dict[str, Any] | None) -> int:
    """The document's ``version`` if it is a non-negative integer (a whole double too, as
    shells write), else 0."""
    version = None if doc is None else doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int | float):
        return 0
    if isinstance(version, float) and not version.is_integer():
        return 0
    return max(0, int(version)) if abs(version) < 2**53 else 0


@dataclass(frozen=True, slots=True)
class ControlState:
    command: str  # as stored; may be something this version does not understand
    version: int
    timestamp: datetime | str | None
    reason: str
    updated_by: str
    note: str = ""

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ControlState:
        return cls(
            command=safe_text(doc.get("command", ""), 200),
            version=valid_version(doc),
            timestamp=doc.get("timestamp"),
            reason=safe_text(doc.get("reason") or "", 500),
            updated_by=safe_text(doc.get("updated_by") or "", 200),
            note=safe_text(doc.get("note") or "", 500),
        )

    def as_dict(self) -> dict[str, Any]:
        stamp = (
            self.timestamp.isoformat() if isinstance(self.timestamp, datetime) else self.timestamp
        )
        return {
            "command": self.command,
            "version": self.version,
            "timestamp": stamp,
            "reason": self.reason,
            "updated_by": self.updated_by,
            "note": self.note,
        }


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
