"""Console sessions: signed, expiring, bound to the tokens; CSRF tokens per session."""

from __future__ import annotations

import base64
import json

import pytest

from pulling_agent.console.session import Sessions
from pulling_agent.tokens import Principal, Role

NOW = 1_900_000_000.0


OPS = "ops-token-0123456789abc"
GRAFANA = "grafana-token-0123456789"


def tokens(*secrets: str) -> dict[str, Principal]:
    """The fleet's tokens: ops (admin), grafana (read), any other secret as its own name."""
    known = {OPS: Principal("ops", Role.ADMIN), GRAFANA: Principal("grafana", Role.READ)}
    return {s: known.get(s, Principal(s[:8], Role.ADMIN)) for s in secrets}


def test_a_session_reads_back_until_it_expires() -> None:
    sessions = Sessions(tokens(OPS), seconds=60)
    cookie, issued = sessions.issue("ops", Role.ADMIN, now=NOW, token=OPS)
    assert sessions.read(cookie, now=NOW + 59) == issued
    assert sessions.read(cookie, now=NOW + 61) is None
    assert "ops-token" not in base64.urlsafe_b64decode(cookie.split(".")[0] + "==").decode()


def test_agents_with_the_same_tokens_accept_each_others_sessions_and_new_tokens_end_them() -> None:
    cookie, _ = Sessions(tokens(OPS, GRAFANA)).issue("grafana", Role.READ, token=GRAFANA)
    assert Sessions(tokens(GRAFANA, OPS)).read(cookie) is not None
    assert Sessions(tokens("c-token-0123456789abc")).read(cookie) is None
    assert Sessions({}).read(cookie) is None, "without tokens the key is random"


@pytest.mark.parametrize(
    "now",
    [
        {OPS: Principal("ops", Role.READ), GRAFANA: Principal("grafana", Role.READ)},  # demoted
        {OPS: Principal("ops-2", Role.ADMIN), GRAFANA: Principal("grafana", Role.READ)},  # renamed
        {OPS: Principal("grafana", Role.READ), GRAFANA: Principal("ops", Role.ADMIN)},  # swapped
    ],
)
def test_a_session_ends_when_its_token_changes_role_or_name(now: dict[str, Principal]) -> None:
    cookie, _ = Sessions(tokens(OPS, GRAFANA)).issue("ops", Role.ADMIN, token=OPS)
    assert Sessions(tokens(OPS, GRAFANA)).read(cookie) is not None
    assert Sessions(now).read(cookie) is None, "same secrets, so the same key: checked anyway"


def test_a_session_without_its_token_is_no_session_where_tokens_are_set() -> None:
    sessions = Sessions(tokens(OPS))
    anonymous, _ = sessions.issue("ops", Role.ADMIN)  # as a token-less agent issues them
    assert sessions.read(anonymous) is None


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
    assert Sessions(tokens("t-0123456789abcdef")).read(bad) is None


def test_a_tampered_role_or_expiry_breaks_the_signature() -> None:
    sessions = Sessions(tokens(GRAFANA))
    cookie, _ = sessions.issue("grafana", Role.READ, token=GRAFANA)
    assert sessions.read(cookie) is not None
    assert sessions.read(forge(cookie, r="admin")) is None
    assert sessions.read(forge(cookie, e=NOW * 10)) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    sessions = Sessions(tokens(OPS))
    _, one = sessions.issue("ops", Role.ADMIN, token=OPS)
    _, two = sessions.issue("ops", Role.ADMIN, token=OPS)
    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(one, sessions.csrf(two))
    assert not sessions.csrf_ok(one, None) and not sessions.csrf_ok(one, "")
