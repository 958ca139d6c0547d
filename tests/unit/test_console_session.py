"""Console sessions: signed, expiring, bound to the tokens; CSRF tokens per session."""

from __future__ import annotations

import base64
import json

import pytest

from pulling_agent.console.session import Sessions
from pulling_agent.tokens import Role

NOW = 1_900_000_000.0


def test_a_session_reads_back_until_it_expires() -> None:
    sessions = Sessions(["secret-token-0123456789"], seconds=60)
    cookie, issued = sessions.issue("ops", Role.ADMIN, now=NOW)
    assert sessions.read(cookie, now=NOW + 59) == issued
    assert sessions.read(cookie, now=NOW + 61) is None
    assert "secret-token" not in base64.urlsafe_b64decode(cookie.split(".")[0] + "==").decode()


def test_agents_with_the_same_tokens_accept_each_others_sessions_and_new_tokens_end_them() -> None:
    cookie, _ = Sessions(["a-token-0123456789abc", "b-token-0123456789abc"]).issue("ops", Role.READ)
    assert Sessions(["b-token-0123456789abc", "a-token-0123456789abc"]).read(cookie) is not None
    assert Sessions(["c-token-0123456789abc"]).read(cookie) is None
    assert Sessions([]).read(cookie) is None, "without tokens the key is random"


def forge(cookie: str, **changes: object) -> str:
    payload, signature = cookie.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{body}.{signature}"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "no-dot",
        "a.b.c",
        "x" * 5_000,
        "eyJuIjoib3BzIn0.AAAA",
        "%%%.%%%",
    ],
)
def test_malformed_cookies_are_no_session(bad: str) -> None:
    assert Sessions(["t-0123456789abcdef"]).read(bad) is None


def test_a_tampered_role_or_expiry_breaks_the_signature() -> None:
    sessions = Sessions(["t-0123456789abcdef"])
    cookie, _ = sessions.issue("grafana", Role.READ)
    assert sessions.read(forge(cookie, r="admin")) is None
    assert sessions.read(forge(cookie, e=NOW * 10)) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    sessions = Sessions(["t-0123456789abcdef"])
    _, one = sessions.issue("ops", Role.ADMIN)
    _, two = sessions.issue("ops", Role.ADMIN)
    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(one, sessions.csrf(two))
    assert not sessions.csrf_ok(one, None) and not sessions.csrf_ok(one, "")
