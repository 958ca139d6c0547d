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

CONTROL_ID = "global_control"


class ClusterCommand(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    SHUTDOWN = "shutdown"


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
        version = doc.get("version")
        return cls(
            command=str(doc.get("command", "")),
            version=version if isinstance(version, int) and not isinstance(version, bool) else 0,
            timestamp=doc.get("timestamp"),
            reason=str(doc.get("reason") or ""),
            updated_by=str(doc.get("updated_by") or ""),
            note=str(doc.get("note") or ""),
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
