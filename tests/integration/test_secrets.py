"""Secrets in MONGODB_URI never leave the process: not the password, not the query
options that carry passwords or tokens, in any output (API, logs in both formats, health
files, errors)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import build_node
from pulling_agent.config import LogFormat, load_settings
from pulling_agent.logs import configure_logging, get_logger
from pulling_agent.runtime.state import AgentState
from pulling_agent.uri import redact_uri, uri_secrets
from tests.conftest import async_wait_until, make_settings

SECRET_QUERY = (
    "tlsCertificateKeyFilePassword=k3y-pass-SECRET1"
    "&authMechanismProperties=AWS_SESSION_TOKEN:aws%2Bsession-SECRET2"
    "&proxyPassword=proxy-pass-SECRET3"
    "&appName=visible"
)
SECRETS = ("SECRET1", "SECRET2", "SECRET3", "pw-SECRET0")


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "mongodb://app:pw-SECRET0@db1:27017,db2/?" + SECRET_QUERY,
            "mongodb://app:***@db1:27017,db2/?tlsCertificateKeyFilePassword=***"
            "&authMechanismProperties=***&proxyPassword=***&appName=visible",
        ),
        (
            "mongodb://db/?sslPEMKeyPassword=x-SECRET&tls=true",
            "mongodb://db/?sslPEMKeyPassword=***&tls=true",
        ),
        ("mongodb://user@db/?authSource=admin", "mongodb://user@db/?authSource=admin"),
    ],
)
def test_every_secret_in_the_uri_is_redacted(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    for secret in uri_secrets(uri):
        assert secret not in redact_uri(uri)


def test_secrets_include_every_encoding_of_every_secret_option() -> None:
    uri = "mongodb://app:p%40ss-SECRET0@db/?" + SECRET_QUERY
    found = uri_secrets(uri)
    for expected in (
        "p%40ss-SECRET0",
        "p@ss-SECRET0",
        "aws+session-SECRET2",
        "aws%2Bsession-SECRET2",
        "k3y-pass-SECRET1",
        "proxy-pass-SECRET3",
    ):
        assert expected in found, expected


@pytest.mark.parametrize("fmt", [LogFormat.JSON, LogFormat.CONSOLE])
def test_logs_scrub_secret_options_in_both_formats(fmt: LogFormat) -> None:
    settings = load_settings(
        mongodb_uri="mongodb://app:pw-SECRET0@db/?" + SECRET_QUERY,
        mongodb_database="d",
        mongodb_collection="c",
    )
    out = io.StringIO()
    configure_logging("INFO", fmt, settings.secrets(), stream=out)
    try:
        log = get_logger()
        log.info("raw uri", uri=settings.uri)
        log.info("decoded", value="token is aws+session-SECRET2 here")
        log.warning("error text", error=f"could not use {settings.uri}")
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    for secret in SECRETS:
        assert secret not in text, (secret, text)


async def test_the_api_shows_the_uri_redacted(
    mongo_uri: str, db_name: str, tmp_path: Path, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    uri = (
        mongo_uri
        + ("&" if "?" in mongo_uri else "?")
        + SECRET_QUERY.replace("&proxyPassword=proxy-pass-SECRET3", "")
    )
    settings = make_settings(tmp_path, mongodb_uri=uri, mongodb_database=db_name, api_port=0)
    node = build_node(settings, client, _noop)
    task = asyncio.create_task(node.agent.run(install_signals=False))
    try:
        await async_wait_until(lambda: node.agent.state is AgentState.RUNNING)
        assert node.app is not None
        transport = httpx.ASGITransport(app=node.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as api:
            body = (await api.get("/api/mongo/status")).json()
            state = (await api.get("/api/agent/state")).text
        assert "tlsCertificateKeyFilePassword=***" in body["uri"]
        everything = json.dumps(body) + state + (tmp_path / "health" / "liveness").read_text()
        for secret in SECRETS:
            assert secret not in everything
    finally:
        node.agent.request_shutdown("test over")
        await asyncio.wait_for(task, 30)
        await client.drop_database(db_name)


async def _noop(doc: dict[str, Any]) -> None:
    return None
