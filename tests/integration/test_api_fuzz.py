"""Schemathesis over /openapi.json against a real agent's API (served by uvicorn on a free
loopback port): whatever it sends, no response is a 5xx.

The agent runs in a thread of its own event loop and follows the cluster document (so
``?wait=`` requests are acknowledged at once); POST /api/cluster/shutdown is left out, as
it would stop the server under test - its inputs are covered in test_api.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import Node, build_node
from pulling_agent.scheduler.definitions import parse_jobs
from tests.conftest import make_settings, wait_until

TOKEN = "fuzz-token-0123456789abcdef"


async def _noop(doc: dict[str, Any]) -> None:
    return None


@pytest.fixture(scope="module")
def live_api(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    agent_settings = make_settings(
        tmp,
        mongodb_uri=mongo_uri,
        mongodb_database="pa_fuzz",
        api_port=0,
        api_host="127.0.0.1",
        api_tokens=f"fuzz:{TOKEN}",
        control_polling_interval=0.05,
    )
    loop = asyncio.new_event_loop()
    holder: dict[str, Node] = {}

    async def main() -> int:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
        jobs = parse_jobs(
            [
                {
                    "id": "hourly",
                    "trigger": "interval",
                    "hours": 1,
                    "func": "tests.unit.sample_jobs:record",
                }
            ],
            "fuzz",
        )
        node = build_node(agent_settings, client, _noop, jobs=jobs)
        holder["node"] = node
        try:
            return await node.agent.run(install_signals=False)
        finally:
            await client.drop_database("pa_fuzz")
            await client.close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    wait_until(lambda: "node" in holder and holder["node"].agent.state.value == "running")
    api = holder["node"].api
    assert api is not None
    yield f"http://127.0.0.1:{api.port}"
    loop.call_soon_threadsafe(holder["node"].agent.request_shutdown, "fuzzing done")
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_no_request_gets_a_server_error(live_api: str, tmp_path: Path) -> None:
    """The schemathesis CLI (its pytest plugin does not support this pytest yet)."""
    schemathesis_cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis_cli),
            "run",
            f"{live_api}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--exclude-path",
            "/api/cluster/shutdown",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            "25",
            "--seed",
            "2026",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases is not None, result.stdout[-2000:]
    assert int(cases.group(1)) >= 50, "schemathesis must actually have sent requests"
    assert cases.group(1) == cases.group(2), result.stdout[-4000:]
