from pathlib import Path

from pulling_agent.api.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "API-REFERENCE.md"


def test_committed_api_reference_matches_the_code() -> None:
    assert DOC.read_text() == render(), (
        "docs/API-REFERENCE.md is stale: python -m pulling_agent.api.reference > "
        "docs/API-REFERENCE.md"
    )
