"""Bearer-token authentication for mutating endpoints.

``API_TOKENS="name:token,other:token2"``. A request without ``Authorization: Bearer …``
gets 401; an unknown token gets 403. The identity is the token's *name*, which is what the
audit trail records (a caller's ``updated_by`` cannot impersonate anyone). With no tokens
configured the API listens on loopback only and every local caller is ``local``.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

ANONYMOUS = "local"


class TokenAuth:
    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = tokens  # token -> name

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identify(self, authorization: str | None) -> str:
        """The name behind the ``Authorization`` header, or an HTTP 401/403."""
        if not self._tokens:
            return ANONYMOUS
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        presented = presented.strip()
        name = None
        for token, token_name in self._tokens.items():  # compare with every token, in constant time
            if hmac.compare_digest(token.encode(), presented.encode()):
                name = token_name
        if name is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "token not accepted")
        return name


def require_identity(request: Request) -> str:
    """FastAPI dependency for mutating endpoints."""
    auth: TokenAuth = request.app.state.auth
    return auth.identify(request.headers.get("authorization"))
