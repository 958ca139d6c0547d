"""``pulling-agent ctl`` and ``jobs`` in process (typer's CliRunner): straight on MongoDB
(``--mongodb-uri``, no agent needed) and through a running agent's API (``--url``)."""

from __future__ import annotations

import asyncio
import json

from pulling_agent.bootstrap import Node
from pulling_agent.runtime.state import AgentState
from tests.conftest import async_wait_until, invoke
from tests.integration.conftest import TOKEN


def test_ctl_commands_straight_on_mongodb(cli_env: dict[str, str | None], mongo_uri: str) -> None:
    direct = ("--mongodb-uri", mongo_uri, "--json")
    paused = invoke(cli_env, "ctl", "pause", "--reason", "maintenance", *direct)
    assert paused.returncode == 0, paused.stderr
    control = json.loads(paused.stdout)["control"]
    assert (control["command"], control["version"], control["reason"]) == (
        "pause",
        1,
        "maintenance",
    )
    assert control["updated_by"].startswith("cli:")
    status = json.loads(invoke(cli_env, "ctl", "status", *direct).stdout)
    assert (status["control"]["command"], status["stats"]["live_agents"]) == ("pause", 0)
    resumed = json.loads(invoke(cli_env, "ctl", "resume", *direct).stdout)
    assert (resumed["control"]["command"], resumed["control"]["version"]) == ("resume", 2)
    table = invoke({**cli_env, "COLUMNS": "200"}, "ctl", "status", "--mongodb-uri", mongo_uri)
    assert "resume (version 2)" in table.stdout and "0 live agents" in table.stdout


def test_jobs_commands_straight_on_mongodb(cli_env: dict[str, str | None], mongo_uri: str) -> None:
    listed = invoke(cli_env, "jobs", "list", "--mongodb-uri", mongo_uri, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    missing = invoke(cli_env, "jobs", "pause", "nightly", "--mongodb-uri", mongo_uri)
    assert missing.returncode == 1
    assert "no job 'nightly'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


async def test_ctl_through_an_agents_api_waits_for_its_acknowledgement(
    node: Node, cli_env: dict[str, str | None]
) -> None:
    assert node.api is not None
    url = f"http://127.0.0.1:{node.api.port}"
    env = {**cli_env, "PULLING_AGENT_TOKEN": TOKEN}
    # the agent answers in this event loop: the command runs in a thread
    paused = await asyncio.to_thread(
        invoke, env, "ctl", "pause", "--url", url, "--reason", "deploy", "--wait", "10"
    )
    assert paused.returncode == 0, paused.stderr
    assert "cluster pause issued: version 1 by ops" in paused.stdout
    assert f"acknowledged by 1: {node.agent.settings.agent_id}" in paused.stdout
    await async_wait_until(lambda: node.agent.state is AgentState.PAUSED, what="paused")
    refused = await asyncio.to_thread(
        invoke, {**env, "PULLING_AGENT_TOKEN": "wrong-token-0123456789"}, "ctl", "resume",
        "--url", url,
    )  # fmt: skip
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr
    assert node.agent.state is AgentState.PAUSED
