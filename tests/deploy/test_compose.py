"""docker-compose.yml, run as a developer would: the embedded server and two agents from a
locally built image (with nx-27017 added), API and console on loopback."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import yaml
from pymongo import MongoClient

from pulling_agent.dev.embedded import free_port
from tests.conftest import wait_until
from tests.deploy.conftest import ROOT, _missing, build

pytestmark = pytest.mark.system
TAG = "pulling-agent:compose-test"
TOKEN = f"dev-{secrets.token_hex(16)}"  # what make dev-token writes to .env
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture
def stack(engine: dict[str, str]) -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    if shutil.which("docker-compose") is None:
        _missing("docker-compose.yml's test needs Debian's docker-compose: make docker-engine")
    build(engine, TAG, "nx-27017")
    ports = {"MONGO_PORT": free_port(), "AGENT1_PORT": free_port(), "AGENT2_PORT": free_port()}
    env = {
        **engine,
        "IMAGE": TAG,
        "PULLING_AGENT_DEV_TOKEN": TOKEN,
        **{k: str(v) for k, v in ports.items()},
    }
    project = [
        "docker-compose",
        "--project-name",
        "pa-compose-test",
        "--file",
        "docker-compose.yml",
    ]

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*project, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )

    up = compose("up", "--detach")
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        yield env, ports
    finally:
        compose("down", "--volumes", "--timeout", "20")


def test_the_compose_stack_processes_work_and_serves_the_console(
    stack: tuple[dict[str, str], dict[str, int]],
) -> None:
    _, ports = stack
    client: MongoClient[dict[str, Any]] = MongoClient(
        f"mongodb://127.0.0.1:{ports['MONGO_PORT']}/", serverSelectionTimeoutMS=2000
    )
    wait_until(lambda: _pings(client), 60, what="the embedded server in the stack")
    work = client["app"]["work"]
    work.insert_many([{"status": "pending", "n": i} for i in range(20)])
    wait_until(
        lambda: work.count_documents({"status": {"$in": ["processed", "failed"]}}) == 20,
        90,
        what="both agents worked the documents",
    )
    registry = client["app"]["agent_registry"]
    # an agent that came up before the server retries its start every 5 s: wait for both
    wait_until(
        lambda: {d["_id"] for d in registry.find({})} == {"agent-1", "agent-2"},
        60,
        what="both agents registered",
    )
    for port in (ports["AGENT1_PORT"], ports["AGENT2_PORT"]):
        # an agent registers before its API listens (companions start in order)
        pages: list[tuple[int, bytes]] = []
        wait_until(partial(_login_page, port, pages), 30, what=f"the console on port {port}")
        status, body = pages[-1]
        assert status == 200 and b"Sign in" in body
    client.close()


def _login_page(port: int, pages: list[tuple[int, bytes]]) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/login", timeout=10) as page:
            pages.append((page.status, page.read()))
    except OSError:  # not listening yet: the port mapping resets the connection
        return False
    return True


def test_the_compose_file_ships_no_token() -> None:
    """The agents' admin token comes from each checkout's .env (make dev-token), never from
    the repository; the file says what is reachable from where."""
    compose = yaml.safe_load(COMPOSE.read_text())
    tokens = compose["x-agent"]["environment"]["API_TOKENS"]
    assert tokens.startswith("dev:${PULLING_AGENT_DEV_TOKEN:?"), tokens
    assert "WITHOUT authentication" in COMPOSE.read_text()
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def _pings(client: MongoClient[dict[str, Any]]) -> bool:
    try:
        client.admin.command("ping")
    except Exception:
        return False
    return True
