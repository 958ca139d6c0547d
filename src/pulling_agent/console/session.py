"""Console sessions: a signed cookie instead of a token in every request, and CSRF tokens.

The cookie holds ``{name, role, exp, nonce}`` (never the token) and an HMAC-SHA256 over it.
The key is derived from every ``API_TOKENS`` secret, so any agent of a fleet with the same
tokens accepts a session another agent issued, and changing the tokens ends every session.
Without tokens (a loopback-only API) the key is random per process. A state-changing
request must carry the session's CSRF token (HMAC of its nonce) in a header that only the
console's own script sends, and come from the same origin. Pure, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pulling_agent.tokens import Role

COOKIE = "pa_console"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 8 * 3600
MAX_COOKIE_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    role: Role
    expires: float
    nonce: str

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


class Sessions:
    def __init__(self, token_secrets: Iterable[str], seconds: float = SESSION_SECONDS) -> None:
        material = sorted(token_secrets)
        if material:
            joined = "\0".join(material).encode()
            self._key = hmac.new(b"pulling-agent console v1", joined, hashlib.sha256).digest()
        else:
            self._key = secrets.token_bytes(32)
        self.seconds = seconds

    def issue(self, name: str, role: Role, now: float | None = None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        start = time.time() if now is None else now
        session = Session(name, role, start + self.seconds, secrets.token_hex(16))
        body = json.dumps(
            {"n": name, "r": role.value, "e": session.expires, "x": session.nonce},
            separators=(",", ":"),
        ).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None (absent, forged, malformed or expired)."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(str(data["n"]), Role(data["r"]), float(data["e"]), str(data["x"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > (time.time() if now is None else now) else None

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.nonce}")

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(self.csrf(session), offered or "")

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
