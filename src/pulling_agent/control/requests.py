"""How control sources combine: each source holds its own pause request, and the agent
processes only while no source asks for a pause. Pure, no I/O.

A resume from one source releases only that source's request; if another source still
holds a pause, the agent stays paused and :meth:`PauseRequests.holders` says which and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Source(StrEnum):
    SIGNAL = "signal"
    CONTROL_FILE = "control_file"
    API = "api"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True)
class PauseRequest:
    source: Source
    reason: str
    by: str
    at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "source": self.source.value,
            "reason": self.reason,
            "by": self.by,
            "at": self.at.isoformat(),
        }


class PauseRequests:
    def __init__(self) -> None:
        self._held: dict[Source, PauseRequest] = {}

    def hold(self, request: PauseRequest) -> bool:
        """Record a pause request. Returns True if the source was not holding one."""
        was_held = request.source in self._held
        self._held[request.source] = request
        return not was_held

    def release(self, source: Source) -> bool:
        """Drop the source's request. Returns True if it was holding one."""
        return self._held.pop(source, None) is not None

    def holds(self, source: Source) -> bool:
        return source in self._held

    @property
    def paused(self) -> bool:
        return bool(self._held)

    def holders(self) -> list[PauseRequest]:
        return sorted(self._held.values(), key=lambda r: r.at)

    def summary(self) -> str:
        """``source(reason), ...`` for logs and the liveness file; empty when not paused."""
        return ",".join(f"{r.source.value}({r.reason})" for r in self.holders())
