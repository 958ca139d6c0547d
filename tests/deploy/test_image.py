"""The container image, built and run on a real Docker engine (Debian's docker.io) with a
base image made from Debian's packages (mmdebstrap; registries are unreachable here).

The engine and the image come from tests/deploy/conftest.py. Without the engine the tests
skip with the install hint; under ``CI`` they fail instead (``make test`` installs it:
``make docker-engine``). Timings and the image size go to ``image-report.json`` in the
engine's directory; they are printed, never asserted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.deploy.conftest import ROOT, docker

pytestmark = pytest.mark.system


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


@pytest.fixture
def container(
    engine: dict[str, str], image: str, mongo_uri: str, db_name: str, handler_dir: Path
) -> Iterator[Callable[..., str]]:
    """Start agent containers on the test's database (removed at the end): read-only root,
    the handlers mounted, health checked every second. Returns the container's name."""
    started: list[str] = []

    def start(kind: str, *extra: str) -> str:
        name = f"pa-{kind}-{db_name}"
        started.append(name)
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
            "-v",
            f"{handler_dir}:/handlers:ro",
            "-e",
            f"MONGODB_URI={mongo_uri}",
            "-e",
            f"MONGODB_DATABASE={db_name}",
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
        return name

    yield start
    for name in started:
        docker(engine, "rm", "--force", name)


def health(engine: dict[str, str], name: str) -> str:
    return docker(engine, "inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()


def test_the_image_processes_work_read_only_and_obeys_signals(
    engine: dict[str, str], container: Callable[..., str], work: Any
) -> None:
    work.insert_many([{"status": "pending", "n": i} for i in range(20)])
    name = container("test")
    wait_until(lambda: work.count_documents({"status": "processed"}) == 20, 60, what="processed")
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
    wait_until(lambda: (work.find_one(late) or {}).get("status") == "processed", 30, what="late")

    began = time.monotonic()
    stop = docker(engine, "stop", "--time", "30", name, timeout=60)
    assert stop.returncode == 0
    assert time.monotonic() - began < 30, "stopped by SIGTERM, not killed at the deadline"
    code = docker(engine, "inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
    assert code == "0", docker(engine, "logs", name).stderr[-2000:]
    assert work.count_documents({"status": "processing"}) == 0, "no lease left behind"


def test_a_kubelet_style_control_directory_pauses_the_container(
    engine: dict[str, str], container: Callable[..., str], work: Any, tmp_path: Path
) -> None:
    control = tmp_path / "control"
    (control / "..2026_11_23_00_00_00.000000001").mkdir(parents=True)
    (control / "..2026_11_23_00_00_00.000000001" / "state").write_text("pause\n")
    (control / "..data").symlink_to("..2026_11_23_00_00_00.000000001")
    (control / "state").symlink_to("..data/state")
    for path in (control, control / "..2026_11_23_00_00_00.000000001"):
        path.chmod(0o755)
    work.insert_many([{"status": "pending", "n": i} for i in range(3)])
    name = container(
        "control",
        "-v",
        f"{control}:/etc/agent-control:ro",
        "-e",
        "CONTROL_FILE=/etc/agent-control/state",
    )
    wait_until(lambda: health(engine, name) == "healthy", 60, what="healthy while paused")
    liveness = docker(engine, "exec", name, "cat", "/tmp/health/liveness").stdout
    assert liveness.splitlines()[:1] == ["paused"], liveness
    assert work.count_documents({"status": "pending"}) == 3, "nothing claimed while paused"


def test_healthcheck_turns_unhealthy_when_the_agent_is_wedged(
    engine: dict[str, str], container: Callable[..., str], work: Any
) -> None:
    """An async handler that blocks the event loop stops the heartbeat: the liveness file
    goes stale and the probe fails (with --max-age 3 instead of the image's 30, to wait
    seconds rather than half a minute)."""
    work.insert_one({"status": "pending"})
    name = container(
        "wedged",
        "-e",
        "HANDLER=imagejobs:wedge",
        "--health-cmd",
        "pulling-agent health --max-age 3",
        "--health-retries",
        "2",
    )
    wait_until(lambda: health(engine, name) == "unhealthy", 60, what="unhealthy")
