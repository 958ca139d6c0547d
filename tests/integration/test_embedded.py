"""The development server behind ``run --embedded PATH``: a kept data directory keeps its
address across restarts, so every other shell's MONGODB_URI keeps working."""

from __future__ import annotations

from pathlib import Path

from pulling_agent.dev.embedded import EmbeddedServer


def test_a_kept_data_directory_keeps_its_port(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path / "devdata") as first:
        uri = first.uri
    with EmbeddedServer(tmp_path / "devdata") as again:
        assert again.uri == uri
    with EmbeddedServer() as temporary, EmbeddedServer() as other:
        assert temporary.uri != other.uri, "temporary servers take any free port"


def test_commands_reach_the_development_server_by_its_data_folder(tmp_path: Path) -> None:
    from pymongo import MongoClient

    from tests.conftest import invoke

    env: dict[str, str | None] = {
        "MONGODB_URI": None,
        "MONGODB_DATABASE": None,
        "MONGODB_COLLECTION": None,
    }
    data = tmp_path / "devdata"
    missing = invoke(env, "--embedded", str(data), "dlq", "list")
    assert missing.returncode == 2 and "run --embedded" in missing.stderr
    with EmbeddedServer(data) as server:
        made = invoke(env, "--embedded", str(data), "enqueue", '{"n": 1}')
        assert made.returncode == 0, made.stderr
        client: MongoClient[dict[str, object]] = MongoClient(server.uri)
        assert client.pulling_agent_dev.work.count_documents({"n": 1}) == 1
        client.close()
