"""A Docker engine for the image and compose tests: Debian's docker.io with dockerd on a
private socket (started here unless one answers there, stopped by its PID at the end) and a
base image from Debian's packages (mmdebstrap), both kept outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
BASE = "pulling-agent-base:bookworm"
IMAGE = "pulling-agent:test"
BASE_PYTHON = "3.11"  # Debian bookworm's python3
DOCKER_DIR = Path(os.environ.get("PULLING_AGENT_DOCKER_DIR", "/var/cache/pulling-agent-docker"))


def _missing(message: str) -> None:
    # PULLING_AGENT_MAY_SKIP=docker: a CI without root for its own dockerd (GitHub's runners)
    if os.environ.get("CI") and "docker" not in os.environ.get("PULLING_AGENT_MAY_SKIP", ""):
        pytest.fail(message + " (CI must install it: make docker-engine)")
    pytest.skip(message)


def docker(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def engine() -> Iterator[dict[str, str]]:
    if not (shutil.which("dockerd") and shutil.which("docker") and shutil.which("mmdebstrap")):
        _missing("the image tests need Debian's docker.io and mmdebstrap: make docker-engine")
    if os.geteuid() != 0:
        _missing("the image tests start dockerd, which needs root here")
    DOCKER_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{DOCKER_DIR}/docker.sock"}
    started = None
    if docker(env, "version").returncode != 0:
        log = (DOCKER_DIR / "dockerd.log").open("ab")
        started = subprocess.Popen(
            [
                "dockerd",
                "-H",
                env["DOCKER_HOST"],
                "--data-root",
                str(DOCKER_DIR / "data"),
                "--exec-root",
                str(DOCKER_DIR / "exec"),
                "--pidfile",
                str(DOCKER_DIR / "docker.pid"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: docker(env, "version").returncode == 0, 60, what="dockerd")
    try:
        if docker(env, "image", "inspect", BASE).returncode != 0:
            rootfs = DOCKER_DIR / "rootfs.tar"
            if not rootfs.exists():
                subprocess.run(
                    [
                        "mmdebstrap",
                        "--quiet",
                        "--variant=minbase",
                        "--include=python3,python3-venv",
                        "bookworm",
                        str(rootfs),
                    ],
                    check=True,
                    timeout=600,
                )
            subprocess.run(["docker", "import", str(rootfs), BASE], env=env, check=True)
        yield env
    finally:
        if started is not None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(timeout=30)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=10)


def build(engine: dict[str, str], tag: str, extra_wheels: str = "") -> float:
    """``make docker-build`` on the local base; returns the seconds it took."""
    began = time.monotonic()
    build = subprocess.run(
        [
            "make",
            "docker-build",
            f"IMAGE={tag}",
            f"BASE_IMAGE={BASE}",
            f"IMAGE_PYTHON={BASE_PYTHON}",
            f"EXTRA_WHEELS={extra_wheels}",
        ],
        cwd=ROOT,
        env=engine,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return time.monotonic() - began


@pytest.fixture(scope="session")
def image(engine: dict[str, str]) -> str:
    seconds = build(engine, IMAGE)
    size = int(docker(engine, "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout.strip())
    base = int(docker(engine, "image", "inspect", "-f", "{{.Size}}", BASE).stdout.strip())
    report = {"build_seconds": round(seconds, 1), "image_bytes": size, "base_bytes": base}
    (DOCKER_DIR / "image-report.json").write_text(json.dumps(report))
    print(f"image built in {seconds:.0f} s: {size / 1e6:.0f} MB ({base / 1e6:.0f} MB base)")
    return IMAGE
