from pathlib import Path

import pytest

from pulling_agent.config import ChangeStreams, load_settings, redact_uri
from pulling_agent.errors import ConfigError

BASE = {"MONGODB_URI": "mongodb://h:27017", "MONGODB_DATABASE": "d", "MONGODB_COLLECTION": "c"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(__import__("os").environ):
        if key.startswith(("MONGODB_", "BATCH_", "POLL_", "LOG_", "HANDLER", "ENABLE_")):
            monkeypatch.delenv(key)
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_seed_defaults(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.poll_interval, s.batch_size, s.shutdown_timeout) == (5, 100, 30)
    assert (s.log_level, s.heartbeat_interval, s.control_polling_interval) == ("INFO", 5, 10)
    assert s.enable_distributed_control is True
    assert s.enable_change_streams is ChangeStreams.AUTO
    assert s.health_dir == Path("/tmp/health")
    assert s.control_file == Path("/tmp/control/state")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BATCH_SIZE", "abc"),
        ("BATCH_SIZE", "0"),
        ("POLL_INTERVAL", "-1"),
        ("LOG_LEVEL", "LOUD"),
        ("ENABLE_CHANGE_STREAMS", "maybe"),
        ("MAX_ATTEMPTS", "0"),
        ("CONCURRENCY", ""),
        ("RATE_LIMIT", "0"),
        ("RATE_LIMIT", "fast"),
        ("RATE_LIMIT", "nan"),
        ("FLEET_RATE_LIMIT", "-5"),
        ("FLEET_RATE_LIMIT", "inf"),
        ("TRACE_URL", "https://jaeger.example.com/trace/"),
        ("TRACE_URL", "javascript:alert(1)//{trace_id}"),
        ("TRACE_URL", "https://x.example/{trace_id}\x1b[2J"),
    ],
)
def test_invalid_values_name_the_variable(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{name} is invalid")
    assert "\n" not in message


def test_missing_required_variable(env: pytest.MonkeyPatch) -> None:
    env.delenv("MONGODB_COLLECTION")
    with pytest.raises(ConfigError, match=r"^MONGODB_COLLECTION is required"):
        load_settings()


def test_uri_password_never_in_errors_or_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("MONGODB_URI", "http://admin:hunter2secret@db:27017")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2secret" not in str(info.value)
    assert str(info.value).startswith("MONGODB_URI is invalid")
    env.setenv("MONGODB_URI", "mongodb://admin:hunter2secret@db:27017/?authSource=admin")
    settings = load_settings()
    assert "hunter2secret" not in repr(settings)
    assert "hunter2secret" not in settings.redacted_uri
    assert "hunter2secret" in settings.secrets()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mongodb://u:p@h:1/db", "mongodb://u:***@h:1/db"),
        ("mongodb+srv://u:p%40ss@cluster.example/", "mongodb+srv://u:***@cluster.example/"),
        ("mongodb://h:1", "mongodb://h:1"),
        ("mongodb://u:p@x@h:1", "mongodb://u:***@h:1"),
    ],
)
def test_redact_uri(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected


def test_change_streams_accepts_always_and_booleans(env: pytest.MonkeyPatch) -> None:
    for raw, expected in [("always", "always"), ("False", "false"), ("1", "true")]:
        env.setenv("ENABLE_CHANGE_STREAMS", raw)
        assert load_settings().enable_change_streams.value == expected


def test_api_tokens_parse_and_never_echo(env: pytest.MonkeyPatch) -> None:
    env.setenv("API_TOKENS", "ops:0123456789abcdef0123, ci:fedcba9876543210fedc")
    settings = load_settings()
    assert {t: p.name for t, p in settings.tokens.items()} == {
        "0123456789abcdef0123": "ops",
        "fedcba9876543210fedc": "ci",
    }
    assert settings.api_bind_host == "0.0.0.0"
    assert "0123456789abcdef0123" in settings.secrets()
    assert "0123456789abcdef0123" not in repr(settings)
    env.setenv("API_TOKENS", "ops:short-secret")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("API_TOKENS is invalid")
    assert "short-secret" not in str(info.value)


def test_without_tokens_the_api_binds_to_loopback(env: pytest.MonkeyPatch) -> None:
    assert load_settings().api_bind_host == "127.0.0.1"


def test_an_exposed_api_needs_tokens(env: pytest.MonkeyPatch) -> None:
    env.setenv("API_HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match=r"^API_HOST=0.0.0.0 needs API_TOKENS"):
        load_settings()
    env.setenv("API_HOST", "127.0.0.1")
    assert load_settings().api_bind_host == "127.0.0.1"
    env.setenv("API_HOST", "0.0.0.0")
    env.setenv("API_TOKENS", "ops:0123456789abcdef0123")
    assert load_settings().api_bind_host == "0.0.0.0"


def test_the_env_example_lists_every_setting() -> None:
    """.env.example (Cronzimus's promise) names every variable the agent reads, the three
    required ones set, the rest commented out at their default."""
    from pathlib import Path

    from pulling_agent.config import Settings

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    for field in Settings.model_fields:
        assert f"{field.upper()}=" in text, f"{field.upper()} is missing from .env.example"
    for required in ("MONGODB_URI=", "MONGODB_DATABASE=", "MONGODB_COLLECTION="):
        assert f"\n{required}" in text
