"""The chaos part of the suite: real agent processes against bad documents, misbehaving
handlers, kill storms and a server that dies. Run alone with ``pytest tests/chaos``."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from pulling_agent.dev.embedded import EmbeddedServer
from tests.system.conftest import agent_env, spawn

__all__ = ["agent_env", "own_server", "spawn"]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """An nx-27017 of the test's own, which it may stop and start (data kept)."""
    server = EmbeddedServer(tmp_path / "own-server").start()
    yield server
    server.stop()
