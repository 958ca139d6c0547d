"""Supply chain and static checks: bandit on src/ with only the justified skips, the
lock file covers the runtime dependencies at safe versions, and the image installs from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_finds_nothing_beyond_the_justified_skips() -> None:
    bandit = shutil.which("bandit")
    if bandit is None:
        if os.environ.get("CI"):
            pytest.fail("bandit is missing: make tools")
        pytest.skip("bandit is not installed: make tools")
    result = subprocess.run(
        [bandit, "-q", "-c", str(ROOT / ".bandit.yaml"), "-r", str(ROOT / "src")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    config = yaml.safe_load((ROOT / ".bandit.yaml").read_text())
    comments = (ROOT / ".bandit.yaml").read_text()
    for skipped in config["skips"]:
        assert any(skipped in line for line in comments.splitlines() if line.startswith("# ")), (
            f"{skipped} unexplained"
        )


def _locked(lock: str = "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith(("#", "--")):
            name, _, version = line.split()[0].partition("==")
            pins[name.lower()] = version
    return pins


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_the_locks_hash_every_file_and_name_no_local_index(lock: str) -> None:
    text = (ROOT / lock).read_text()
    assert not [line for line in text.splitlines() if line.startswith("-") or "file://" in line], (
        "an index, find-links or local path line (this machine's pip configuration?)"
    )
    entries: list[list[str]] = []  # a requirement line and the lines that continue it
    for line in text.splitlines():
        if line[:1].isalnum():
            entries.append([line])
        elif entries and line.strip().startswith("--hash="):
            entries[-1].append(line)
    assert entries, "no requirement"
    unhashed = [e[0] for e in entries if "==" not in e[0] or len(e) < 2]
    assert unhashed == [], "every requirement is pinned and carries its files' hashes"


def test_the_dev_lock_keeps_the_runtime_pins() -> None:
    runtime, dev = _locked(), _locked("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_lock_pins_every_runtime_dependency_past_known_bad_releases() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    for requirement in project["dependencies"]:
        name = requirement.split(">=")[0].split("<")[0].split("[")[0].strip().lower()
        assert name in locked, f"{name} is not in requirements.lock (make lock)"
    major, minor = (int(p) for p in locked["h11"].split(".")[:2])
    assert (major, minor) >= (0, 16), "h11 before 0.16 accepts malformed chunked bodies"


def test_the_image_and_ci_install_from_the_lock_checking_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    # the image installs only the wheels docker-build downloads at the lock's pins
    assert "--no-index" in dockerfile and "-r requirements.lock" in makefile
    assert "--require-hashes -r /wheels/requirements.lock" in dockerfile
    assert "ARG BASE_IMAGE=" in dockerfile and "FROM ${BASE_IMAGE}" in dockerfile
    assert "--require-hashes -r requirements-dev.lock" in makefile
    assert "--constraint" not in makefile, "constraints would skip the hash check"
