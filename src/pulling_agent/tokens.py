"""API tokens and their roles: ``API_TOKENS="ops:TOKEN:admin,grafana:TOKEN2:read"``.

``name:token`` without a role means ``admin`` (as before roles existed). ``read`` tokens
may call every ``GET`` under ``/api`` (and ``/metrics`` when it requires a token);
``admin`` tokens may also change things. Pure; parsing never echoes a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MIN_TOKEN_LENGTH = 16


class Role(StrEnum):
    READ = "read"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        return self is Role.ADMIN or needed is Role.READ


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token stands for: the name the audit trail records, and what it may do."""

    name: str
    role: Role


def parse_tokens(raw: str) -> dict[str, Principal]:
    """``name:token[:role],…`` as ``{token: Principal}``. Raises ValueError (naming the
    entry, never the token) when an entry is malformed or a name or token repeats."""
    tokens: dict[str, Principal] = {}
    names: set[str] = set()
    for position, entry in enumerate(e.strip() for e in raw.split(",") if e.strip()):
        parts = [p.strip() for p in entry.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"entry {position + 1} is not name:token or name:token:role")
        name, token = parts[0], parts[1]
        try:
            role = Role(parts[2].lower()) if len(parts) == 3 else Role.ADMIN
        except ValueError:
            raise ValueError(
                f"entry {position + 1} ({name!r}) has an unknown role: use read or admin"
            ) from None
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token of {name!r} is shorter than {MIN_TOKEN_LENGTH} characters")
        if token in tokens or name in names:
            raise ValueError(f"entry {position + 1} repeats a name or a token")
        tokens[token] = Principal(name, role)
        names.add(name)
    return tokens


def admin_token(raw: str) -> str | None:
    """The first admin token of an ``API_TOKENS`` value (inside an agent's pod, ``ctl``
    uses it when given no token), or None."""
    try:
        tokens = parse_tokens(raw)
    except ValueError:
        return None
    return next((t for t, p in tokens.items() if p.role is Role.ADMIN), None)
