"""The seed's ConfigMap command, delivered the way kubelet writes a mounted ConfigMap,
pauses a running agent - and the next one resumes it."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.runtime.agent import Agent
from pulling_agent.runtime.state import AgentState
from tests.conftest import async_wait_until, make_settings
from tests.deploy.test_manifests import tool

SEED = "kubectl create configmap agent-control --from-literal=state={} -o yaml --dry-run=client"


def seed_configmap(state: str) -> dict[str, Any]:
    result = subprocess.run(
        [tool("kubectl"), *SEED.format(state).split()[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = yaml.safe_load(result.stdout)
    return doc


def kubelet_write(mount: Path, configmap: dict[str, Any], generation: int) -> None:
    """A new timestamped directory with every key, then ``..data`` swapped atomically and
    one symlink per key through it (kubelet's AtomicWriter)."""
    data_dir = mount / f"..2026_11_22_12_00_{generation:02d}.{generation:09d}"
    data_dir.mkdir()
    for key, value in configmap["data"].items():
        (data_dir / key).write_text(value)
    (mount / "..data_tmp").symlink_to(data_dir.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    for key in configmap["data"]:
        if not (mount / key).is_symlink():
            (mount / key).symlink_to(f"..data/{key}")


async def _noop(doc: dict[str, Any]) -> None:
    return None


async def test_seed_configmap_pauses_and_resumes_a_running_agent(tmp_path: Path) -> None:
    mount = tmp_path / "control"
    mount.mkdir()
    kubelet_write(mount, seed_configmap("running"), 1)
    settings = make_settings(tmp_path, control_file=mount / "state")
    store = MemoryWorkStore([{"status": "pending"}])
    agent = Agent(settings, store, _noop)
    task = asyncio.create_task(agent.run(install_signals=False))
    try:
        await async_wait_until(lambda: store.get(1)["status"] == "processed")
        kubelet_write(mount, seed_configmap("pause"), 2)
        await async_wait_until(lambda: agent.state is AgentState.PAUSED, what="paused")
        assert not (settings.health_dir / "readiness").exists()
        kubelet_write(mount, seed_configmap("resume"), 3)
        await async_wait_until(lambda: agent.state is AgentState.RUNNING, what="resumed")
    finally:
        agent.request_shutdown("test over")
        assert await asyncio.wait_for(task, 30) == 0
