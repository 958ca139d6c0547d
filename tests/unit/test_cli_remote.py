"""``pulling-agent ctl`` and ``jobs`` in process when no agent answers: one line on stderr,
exit 1, nothing else (how a command reaches the fleet: pulling_agent.cli.remote)."""

from __future__ import annotations

import pytest

from tests.conftest import invoke

ENV: dict[str, str | None] = {"API_TOKENS": None, "PULLING_AGENT_TOKEN": None}
NOBODY = "http://127.0.0.1:1"  # nothing listens on port 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["ctl", "status", "--url", NOBODY], "pulling-agent ctl: cannot reach"),
        (["ctl", "pause", "--url", NOBODY, "--reason", "r"], "pulling-agent ctl: cannot reach"),
        (["ctl", "status", "--url", "ftp://agent"], "must be an http:// or https://"),
        (["jobs", "list", "--url", NOBODY], "pulling-agent jobs: cannot reach"),
        (["jobs", "run", "nightly", "--url", NOBODY], "pulling-agent jobs: cannot reach"),
        (["jobs", "pause", "nightly", "--url", NOBODY], "pulling-agent jobs: cannot reach"),
    ],
)
def test_an_unreachable_agent_is_one_line_and_exit_1(args: list[str], says: str) -> None:
    result = invoke(ENV, *args)
    assert result.returncode == 1
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_an_invalid_mongodb_uri_is_one_line_and_exit_1() -> None:
    env = {**ENV, "MONGODB_DATABASE": "d", "MONGODB_COLLECTION": "c"}
    result = invoke(env, "ctl", "status", "--mongodb-uri", "postgres://nope")
    assert result.returncode == 1
    assert "MONGODB_URI" in result.stderr and len(result.stderr.strip().splitlines()) == 1
