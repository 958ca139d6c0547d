"""The control file (``/tmp/control/state``, mounted from the ``agent-control`` ConfigMap).

Read by path every time: kubelet updates a mounted ConfigMap by swapping the ``..data``
symlink, so an open file or a watched inode would keep the old value. ``pause`` asks for a
pause; ``resume`` and ``running`` withdraw it; a missing file or an empty file asks for
nothing. Anything else is reported (once per distinct value) and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

MAX_BYTES = 256


class FileCommand(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    NONE = "none"  # missing or empty: the file asks for nothing


_WORDS = {
    "pause": FileCommand.PAUSE,
    "paused": FileCommand.PAUSE,
    "resume": FileCommand.RESUME,
    "running": FileCommand.RESUME,
}


@dataclass(frozen=True, slots=True)
class FileReading:
    command: FileCommand | None  # None: the content is not a command (ignored)
    raw: str

    @property
    def valid(self) -> bool:
        return self.command is not None


def parse(content: bytes) -> FileReading:
    """Interpret the file's bytes. Pure: any input gives a reading, never an exception."""
    text = content[:MAX_BYTES].decode("utf-8", errors="replace")
    word = text.strip().lower()
    if not word:
        return FileReading(FileCommand.NONE, "")
    return FileReading(_WORDS.get(word), text.strip()[:64])


def read(path: Path) -> FileReading:
    try:
        with path.open("rb") as handle:
            return parse(handle.read(MAX_BYTES + 1))
    except FileNotFoundError:
        return FileReading(FileCommand.NONE, "")
    except OSError as exc:  # a directory, no permission: report, do not crash
        return FileReading(None, f"<unreadable: {exc.strerror}>")
