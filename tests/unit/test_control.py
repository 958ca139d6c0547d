from datetime import UTC, datetime
from pathlib import Path

import pytest

from pulling_agent.control.file import FileCommand, parse, read
from pulling_agent.control.requests import PauseRequest, PauseRequests, Source

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("content", "command"),
    [
        (b"pause", FileCommand.PAUSE),
        (b"  PAUSE\n", FileCommand.PAUSE),
        (b"resume", FileCommand.RESUME),
        (b"running\n", FileCommand.RESUME),
        (b"", FileCommand.NONE),
        (b"\n \n", FileCommand.NONE),
        (b"pasue", None),
        (b"\x00\xff\xfe binary", None),
        (b"pause please", None),
        (b"p" * 10_000, None),
    ],
)
def test_parse_never_raises(content: bytes, command: FileCommand | None) -> None:
    reading = parse(content)
    assert reading.command is command
    assert len(reading.raw) <= 64


def test_read_missing_file_asks_for_nothing_and_directory_is_ignored(tmp_path: Path) -> None:
    assert read(tmp_path / "absent").command is FileCommand.NONE
    assert read(tmp_path).command is None


def test_agent_processes_only_while_no_source_asks_for_pause() -> None:
    requests = PauseRequests()
    assert not requests.paused
    assert requests.hold(PauseRequest(Source.CONTROL_FILE, "maintenance", "cm", T0))
    assert requests.hold(PauseRequest(Source.SIGNAL, "SIGUSR1", "signal", T0))
    assert requests.release(Source.SIGNAL)
    assert requests.paused, "a resume from one source must not override another source's pause"
    assert requests.summary() == "control_file(maintenance)"
    assert not requests.release(Source.SIGNAL)
    assert requests.release(Source.CONTROL_FILE)
    assert not requests.paused
    assert requests.summary() == ""
