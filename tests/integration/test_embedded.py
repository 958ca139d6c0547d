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
