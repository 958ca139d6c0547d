"""The container image, built and run on a real Docker engine (Debian's docker.io) with a
base image made from Debian's packages (mmdebstrap; registries are unreachable here).

The session starts ``dockerd`` on a private socket (stopped by its PID at the end) unless
one already answers there; the base image and the engine's data live outside the checkout
(``PULLING_AGENT_DOCKER_DIR``, default /var/cache/pulling-agent-docker) and are reused.
Without the engine the tests skip with the install hint; under ``CI`` they fail instead
(``make test`` installs it: ``make docker-engine``). Timings and the image size go to
``image-report.json`` in that directory; they are printed, never asserted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
BASE = "pulling-agent-base:bookworm"
IMAGE = "pulling-agent:test"
BASE_PYTHON = "3.11"  # Debian bookworm's python3
DOCKER_DIR = Path(os.environ.get("PULLING_AGENT_DOCKER_DIR", "/var/cache/pulling-agent-docker"))

pytestmark = pytest.mark.system


def _missing(message: str) -> None:
    if os.environ.get("CI"):
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


@pytest.fixture(scope="session")
def image(engine: dict[str, str]) -> str:
    began = time.monotonic()
    build = subprocess.run(
        [
            "make",
            "docker-build",
            f"IMAGE={IMAGE}",
            f"BASE_IMAGE={BASE}",
            f"IMAGE_PYTHON={BASE_PYTHON}",
        ],
        cwd=ROOT,
        env=engine,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    seconds = time.monotonic() - began
    size = int(docker(engine, "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout.strip())
    base = int(docker(engine, "image", "inspect", "-f", "{{.Size}}", BASE).stdout.strip())
    report = {"build_seconds": round(seconds, 1), "image_bytes": size, "base_bytes": base}
    (DOCKER_DIR / "image-report.json").write_text(json.dumps(report))
    print(f"image built in {seconds:.0f} s: {size / 1e6:.0f} MB ({base / 1e6:.0f} MB base)")
    return IMAGE


def test_the_image_runs_as_10001_without_compilers_or_pip(
    engine: dict[str, str], image: str
) -> None:
    version = docker(engine, "run", "--rm", image, "--version")
    assert version.returncode == 0 and version.stdout.startswith("pulling-agent "), version.stderr
    inside = docker(
        engine,
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "id -u; for c in gcc cc pip pip3; do command -v $c; done; "
        "ls -a /root/.cache 2>/dev/null; true",
    )
    assert inside.stdout.split() == ["10001"], inside.stdout
    pins = {
        name: version
        for name, _, version in (
            line.split()[0].partition("==")
            for line in (ROOT / "requirements.lock").read_text().splitlines()
            if "==" in line and not line.startswith(("#", "-", " "))
        )
    }
    show = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
    for name in ("pymongo", "fastapi", "pydantic", "jinja2", "uvicorn"):
        installed = docker(
            engine, "run", "--rm", "--entrypoint", "python3", image, "-c", show, name
        )
        assert installed.stdout.strip() == pins[name], f"{name} is not at the lock's version"


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    where = tmp_path / "handlers"
    where.mkdir()
    (where / "imagejobs.py").write_text(
        "import time\n\n"
        "async def handle(document):\n    return None\n\n"
        "async def wedge(document):\n    time.sleep(120)  # blocks the event loop: a wedged agent\n"
    )
    where.chmod(0o755)
    (where / "imagejobs.py").chmod(0o644)
    return where


def start(
    engine: dict[str, str], image: str, name: str, mongo_uri: str, db: str, *extra: str
) -> None:
    result = docker(
        engine,
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--health-interval",
        "1s",
        "--health-start-period",
        "1s",
        "-e",
        f"MONGODB_URI={mongo_uri}",
        "-e",
        f"MONGODB_DATABASE={db}",
        "-e",
        "MONGODB_COLLECTION=work",
        "-e",
        "HANDLER=imagejobs:handle",
        "-e",
        "PYTHONPATH=/handlers",
        "-e",
        "POLL_INTERVAL=0.2",
        "-e",
        "HEARTBEAT_INTERVAL=0.5",
        "-e",
        "API_PORT=0",
        "-e",
        "CONTROL_FILE_INTERVAL=0.2",
        "-e",
        "SHUTDOWN_TIMEOUT=10",
        *extra,
        image,
    )
    assert result.returncode == 0, result.stderr


def health(engine: dict[str, str], name: str) -> str:
    return docker(engine, "inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()


def test_the_image_processes_work_read_only_and_obeys_signals(
    engine: dict[str, str], image: str, mongo_uri: str, db_name: str, handler_dir: Path
) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    work = client[db_name]["work"]
    work.insert_many([{"status": "pending", "n": i} for i in range(20)])
    name = f"pa-test-{db_name}"
    start(engine, image, name, mongo_uri, db_name, "-v", f"{handler_dir}:/handlers:ro")
    try:
        wait_until(
            lambda: work.count_documents({"status": "processed"}) == 20, 60, what="processed"
        )
        wait_until(lambda: health(engine, name) == "healthy", 60, what="HEALTHCHECK healthy")

        def ready() -> int:
            probe = ["exec", name, "pulling-agent", "health", "--max-age", "30", "--ready"]
            return docker(engine, *probe).returncode

        assert docker(engine, "kill", "--signal", "USR1", name).returncode == 0
        wait_until(lambda: ready() == 1, 30, what="paused: not ready")
        assert health(engine, name) == "healthy", "a paused agent is alive"
        work.insert_one({"status": "pending", "late": True})
        assert docker(engine, "kill", "--signal", "USR2", name).returncode == 0
        wait_until(lambda: ready() == 0, 30, what="resumed: ready")
        late = {"late": True}
        wait_until(
            lambda: (work.find_one(late) or {}).get("status") == "processed", 30, what="late"
        )

        began = time.monotonic()
        stop = docker(engine, "stop", "--time", "30", name, timeout=60)
        assert stop.returncode == 0
        assert time.monotonic() - began < 30, "stopped by SIGTERM, not killed at the deadline"
        code = docker(engine, "inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", docker(engine, "logs", name).stderr[-2000:]
        assert work.count_documents({"status": "processing"}) == 0, "no lease left behind"
    finally:
        docker(engine, "rm", "--force", name)
        client.drop_database(db_name)
        client.close()


def test_a_kubelet_style_control_directory_pauses_the_container(
    engine: dict[str, str],
    image: str,
    mongo_uri: str,
    db_name: str,
    handler_dir: Path,
    tmp_path: Path,
) -> None:
    control = tmp_path / "control"
    (control / "..2026_11_23_00_00_00.000000001").mkdir(parents=True)
    (control / "..2026_11_23_00_00_00.000000001" / "state").write_text("pause\n")
    (control / "..data").symlink_to("..2026_11_23_00_00_00.000000001")
    (control / "state").symlink_to("..data/state")
    for path in (control, control / "..2026_11_23_00_00_00.000000001"):
        path.chmod(0o755)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    work = client[db_name]["work"]
    work.insert_many([{"status": "pending", "n": i} for i in range(3)])
    name = f"pa-control-{db_name}"
    start(
        engine,
        image,
        name,
        mongo_uri,
        db_name,
        "-v",
        f"{handler_dir}:/handlers:ro",
        "-v",
        f"{control}:/etc/agent-control:ro",
        "-e",
        "CONTROL_FILE=/etc/agent-control/state",
    )
    try:
        wait_until(lambda: health(engine, name) == "healthy", 60, what="healthy while paused")
        liveness = docker(engine, "exec", name, "cat", "/tmp/health/liveness").stdout
        assert liveness.splitlines()[:1] == ["paused"], liveness
        assert work.count_documents({"status": "pending"}) == 3, "nothing claimed while paused"
    finally:
        docker(engine, "rm", "--force", name)
        client.drop_database(db_name)
        client.close()


def test_healthcheck_turns_unhealthy_when_the_agent_is_wedged(
    engine: dict[str, str], image: str, mongo_uri: str, db_name: str, handler_dir: Path
) -> None:
    """An async handler that blocks the event loop stops the heartbeat: the liveness file
    goes stale and the probe fails (with --max-age 3 instead of the image's 30, to wait
    seconds rather than half a minute)."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    client[db_name]["work"].insert_one({"status": "pending"})
    name = f"pa-wedged-{db_name}"
    start(
        engine,
        image,
        name,
        mongo_uri,
        db_name,
        "-v",
        f"{handler_dir}:/handlers:ro",
        "-e",
        "HANDLER=imagejobs:wedge",
        "--health-cmd",
        "pulling-agent health --max-age 3",
        "--health-retries",
        "2",
    )
    try:
        wait_until(lambda: health(engine, name) == "unhealthy", 60, what="unhealthy")
    finally:
        docker(engine, "rm", "--force", name)
        client.drop_database(db_name)
        client.close()
