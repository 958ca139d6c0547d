from pathlib import Path

from pulling_agent.cli.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLI-REFERENCE.md"


def test_committed_cli_reference_matches_the_code() -> None:
    assert DOC.read_text() == render(), (
        "docs/CLI-REFERENCE.md is stale: python -m pulling_agent.cli.reference > "
        "docs/CLI-REFERENCE.md"
    )


def test_the_reference_lists_every_command_and_option() -> None:
    text = render()
    for heading in ("pulling-agent run", "pulling-agent dlq requeue", "pulling-agent jobs history"):
        assert f"## `{heading} " in text
    assert "| `--mongodb-uri` | text |" in text and "Environment: `PULLING_AGENT_URL`" in text


def test_every_help_text_is_one_paragraph() -> None:
    """typer reflows a help text's first paragraph only: the others keep their source line
    breaks and break mid-sentence at 80 columns."""
    import inspect

    import typer

    from pulling_agent.cli.main import app
    from pulling_agent.cli.reference import PROG, _commands

    for path, command, _ in _commands(typer.main.get_command(app), [PROG], None):
        assert "\n\n" not in inspect.cleandoc(command.help or ""), " ".join(path)
