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


def test_a_watcher_never_sees_readiness_beside_a_liveness_that_disagrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes and tests read the two files at any moment between the agent's two writes."""
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
    assert seen, "the writes were not observed"
    assert all(state == "running" for state, ready in seen if ready), seen
    assert ("paused", False) in seen
