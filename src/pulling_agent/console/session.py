"""Console sessions: a signed cookie instead of a token in every request, and CSRF tokens.

The cookie holds ``{name, role, exp, nonce, holder}`` (never the token: ``holder`` is an
HMAC of the token that signed in) and an HMAC-SHA256 over it. The key is derived from every
``API_TOKENS`` secret, so any agent of a fleet with the same tokens accepts a session
another agent issued, and changing a secret ends every session. On every read the session
is checked against the tokens as they are now: the token that signed in must still exist
with the same name and role, so renaming a token, giving it the read role or removing it
ends its sessions. Without tokens (a loopback-only API) the key is random per process.
A state-changing request must carry the session's CSRF token (HMAC of its nonce) in a
header that only the console's own script sends, and come from the same origin. Signing
out revokes the nonce fleet-wide (:mod:`.revocations`). Pure, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pulling_agent.tokens import Principal, Role

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
    def __init__(
        self,
        tokens: Mapping[str, Principal],
        seconds: float = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``tokens``: ``{token: Principal}`` as ``API_TOKENS`` gives them now; ``clock``:
        seconds since the epoch on MongoDB's clock (the agent's), so that a session one
        agent issued expires at the same moment on every agent whatever their nodes say."""
        material = sorted(tokens)
        if material:
            joined = "\0".join(material).encode()
            self._key = hmac.new(b"pulling-agent console v1", joined, hashlib.sha256).digest()
        else:
            self._key = secrets.token_bytes(32)
        self._holders = {self._holder(token): who for token, who in tokens.items()}
        self.seconds = seconds
        self._clock = clock

    def issue(
        self, name: str, role: Role, now: float | None = None, token: str | None = None
    ) -> tuple[str, Session]:
        """A new session and its cookie value; ``token``: the one that signed in (None for
        the anonymous user of a token-less agent)."""
        start = self._clock() if now is None else now
        session = Session(name, role, start + self.seconds, secrets.token_hex(16))
        holder = "" if token is None else self._holder(token)
        body = json.dumps(
            {"n": name, "r": role.value, "e": session.expires, "x": session.nonce, "t": holder},
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
            holder = str(data.get("t", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if session.expires <= (self._clock() if now is None else now):
            return None
        if self._holders or holder:  # the token must still say who, and what, the session is
            who = self._holders.get(holder)
            if who is None or (who.name, who.role) != (session.name, session.role):
                return None
        return session

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.nonce}")

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(self.csrf(session), offered or "")

    def _holder(self, token: str) -> str:
        return self._sign(f"token:{token}")

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
