"""The chaos part of the suite: real agent processes against bad documents, misbehaving
handlers, kill storms and a server that dies. Run alone with ``pytest tests/chaos``."""

from tests.system.conftest import agent_env, spawn

__all__ = ["agent_env", "spawn"]
