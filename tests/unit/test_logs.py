import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from pulling_agent.config import LogFormat
from pulling_agent.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


def test_json_lines_level_filter_and_secret_scrubbing() -> None:
    out = io.StringIO()
    secret = "mongodb://admin:Hunter2Pw@db:27017/"
    configure_logging("WARNING", LogFormat.JSON, secrets=["Hunter2Pw", secret], stream=out)
    log = get_logger(agent_id="a1")
    log.info("not shown", action="x.info")
    log.warning("connect failed", action="x.warn", uri=secret, detail="pw Hunter2Pw leaked")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "connect failed"
    assert event["action"] == "x.warn"
    assert event["agent_id"] == "a1"
    assert event["level"] == "warning"
    assert "Hunter2Pw" not in lines[0]
    assert event["uri"] == "***"


def test_console_format_for_humans() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", LogFormat.CONSOLE, stream=out)
    get_logger().debug("hello", action="x.debug")
    text = out.getvalue()
    assert "hello" in text
    assert "action=x.debug" in text
    assert not text.lstrip().startswith("{")


def test_library_logs_are_json_lines_too() -> None:
    out = io.StringIO()
    configure_logging("INFO", LogFormat.JSON, secrets=["S3cretPw"], stream=out)
    logging.getLogger("uvicorn.error").error("cannot bind with password S3cretPw")
    event = json.loads(out.getvalue().splitlines()[-1])
    assert event["logger"] == "uvicorn.error"
    assert event["level"] == "error"
    assert "S3cretPw" not in out.getvalue()
