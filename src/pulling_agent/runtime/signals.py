"""Hold the agent's signals from the first instruction of the process until the runtime
takes them over.

Importing the CLI and its libraries takes about a second; a SIGTERM in that window would
kill the process with the signal's default action (rc -15) and a SIGUSR1 would kill it too
(rc -10). :func:`capture` records them instead; the runtime replays them once its own
handlers are installed, so a SIGTERM during start-up exits 0 promptly and a SIGUSR1 makes
the agent start paused. Deliberately import-light: only the standard library.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
_pending: list[signal.Signals] = []


def _record(signum: int, frame: FrameType | None) -> None:
    _pending.append(signal.Signals(signum))


def capture() -> None:
    """Record the agent's signals until :func:`take` hands them to the runtime."""
    for sig in SIGNALS:
        signal.signal(sig, _record)


def take() -> list[signal.Signals]:
    """The signals received so far, oldest first (and forget them)."""
    taken = list(_pending)
    del _pending[: len(taken)]
    return taken
