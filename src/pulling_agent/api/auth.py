"""Who may call what.

With ``API_TOKENS`` set, every ``/api/*`` route needs ``Authorization: Bearer <token>``:
a ``read`` token for ``GET``, an ``admin`` token to change anything; ``/metrics`` too when
``METRICS_REQUIRE_TOKEN`` is set; ``/healthz`` and ``/readyz`` stay open. No header → 401,
an unknown token or a role too weak → 403. The identity is the token's *name*, which the
audit trail records (a caller's ``updated_by`` cannot impersonate anyone).

With no tokens the API listens on loopback only and every caller is ``local``; so that a
web page in a browser on the same machine cannot use it, :func:`local_request_problem`
refuses a ``Host`` that is not a loopback literal (DNS rebinding), an ``Origin`` other than
the agent's own (a page of another local server, on another port, is another origin), and
a ``POST`` that a browser could send cross-site without a preflight
(neither ``Content-Type: application/json`` nor the ``X-Pulling-Agent`` header).
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pulling_agent.api.throttle import FailedAuth
from pulling_agent.config import is_loopback
from pulling_agent.tokens import Principal, Role

ANONYMOUS = "local"
LOCAL_HEADER = "x-pulling-agent"
bearer = HTTPBearer(
    auto_error=False,
    description="An API_TOKENS token: read for GET, admin for changes",
)


class TokenAuth:
    def __init__(
        self,
        tokens: dict[str, Principal],
        metrics_require_token: bool = False,
        throttle: FailedAuth | None = None,
    ) -> None:
        self._tokens = tokens
        self.metrics_require_token = metrics_require_token and bool(tokens)
        self.throttle = throttle or FailedAuth()

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def principal(self, presented: str) -> Principal | None:
        """Whose token this is, or None; every token compared, in constant time."""
        offered = presented.strip().encode()
        found = None
        for token, principal in self._tokens.items():
            if hmac.compare_digest(token.encode(), offered):
                found = principal
        return found if offered else None

    def check_throttle(self, client: str) -> None:
        """429 while ``client`` is held off after repeated failures (see :mod:`.throttle`)."""
        wait = self.throttle.retry_after(client)
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"too many failed authentications from this client: retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    def identify(self, authorization: str | None, needed: Role, client: str = "") -> str:
        """The name behind the ``Authorization`` header if its role allows ``needed``,
        or an HTTP 401/403 (429 for a client that keeps presenting wrong tokens)."""
        if not self._tokens:
            return ANONYMOUS
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        self.check_throttle(client)
        found = self.principal(presented)
        if found is None:
            self.throttle.failed(client, "token")
            raise HTTPException(status.HTTP_403_FORBIDDEN, "token not accepted")
        if not found.role.allows(needed):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"token {found.name!r} has the {found.role} role; this needs {needed}",
            )
        return found.name


def client_of(request: Request) -> str:
    """The caller's address as the server sees it (not X-Forwarded-For: anyone writes it)."""
    return request.client.host if request.client else "unknown"


def _identify(request: Request, needed: Role) -> str:
    auth: TokenAuth = request.app.state.auth
    return auth.identify(request.headers.get("authorization"), needed, client_of(request))


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def require_read(request: Request, _: Credentials) -> str:
    """Dependency of every ``/api`` route (declares the bearer scheme in OpenAPI)."""
    return _identify(request, Role.READ)


def require_admin(request: Request, _: Credentials) -> str:
    """Dependency of every route that changes something."""
    return _identify(request, Role.ADMIN)


def require_metrics(request: Request) -> None:
    auth: TokenAuth = request.app.state.auth
    if auth.metrics_require_token:
        _identify(request, Role.READ)


def local_request_problem(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a request must be refused by a token-less (loopback) API, or None."""
    host = headers.get("host", "")
    if not is_loopback(_hostname(host)):
        return "Host is not a loopback address (a token-less API answers local callers only)"
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
        return "cross-origin request refused (only the agent's own origin may call it)"
    if method.upper() not in ("GET", "HEAD", "OPTIONS"):
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json" and LOCAL_HEADER not in headers:
            return (
                "send Content-Type: application/json or an X-Pulling-Agent header "
                "(refused: a browser could send this request cross-site)"
            )
    return None


def _hostname(host: str) -> str:
    """The host part of a Host header (``[::1]:8000`` → ``::1``, ``a:80`` → ``a``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
