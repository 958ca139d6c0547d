import os
import time
from pathlib import Path

import pytest

from pulling_agent.runtime.health import LIVENESS, READINESS, HealthFiles, check


def test_readiness_follows_ready_flag_and_liveness_starts_with_state(tmp_path: Path) -> None:
    files = HealthFiles(tmp_path)
    files.write("running", True, {"processed": 3})
    assert (tmp_path / READINESS).exists()
    lines = (tmp_path / LIVENESS).read_text().splitlines()
    assert lines[0] == "running"
    assert lines[1].startswith("timestamp=")
    assert "processed=3" in lines
    files.write("paused", False, {})
    assert not (tmp_path / READINESS).exists()
    assert (tmp_path / LIVENESS).read_text().splitlines()[0] == "paused"
    files.clear()
    assert not (tmp_path / LIVENESS).exists()


def test_check_reports_fresh_stale_missing_and_not_ready(tmp_path: Path) -> None:
    assert not check(tmp_path, 30).healthy
    files = HealthFiles(tmp_path)
    files.write("paused", False, {})
    report = check(tmp_path, 30)
    assert report.healthy and report.state == "paused"
    assert not check(tmp_path, 30, require_ready=True).healthy
    old = time.time() - 100
    os.utime(tmp_path / LIVENESS, (old, old))
    stale = check(tmp_path, 30)
    assert not stale.healthy and "old" in stale.message


def test_liveness_is_written_before_readiness_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader who sees readiness appear or vanish finds the reason already in liveness
    (test_outages reads ``store=unavailable since`` once readiness is gone)."""
    files = HealthFiles(tmp_path)
    seen: list[tuple[str, bool]] = []
    real_replace = os.replace
    real_unlink = Path.unlink

    def look() -> None:
        liveness = tmp_path / LIVENESS
        state = liveness.read_text().splitlines()[0] if liveness.exists() else ""
        seen.append((state, (tmp_path / READINESS).exists()))

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        look()

    def unlink(path: Path, missing_ok: bool = False) -> None:
        real_unlink(path, missing_ok=missing_ok)
        look()

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    for state, ready in [("running", True), ("paused", False), ("running", True)]:
        files.write(state, ready, {})
    # each write: liveness first (readiness as before), then readiness to match
    assert seen == [
        ("running", False),
        ("running", True),
        ("paused", True),
        ("paused", False),
        ("running", False),
        ("running", True),
    ]
