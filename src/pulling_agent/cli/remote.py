"""How a command reaches the fleet: an agent's HTTP API, or MongoDB directly.

``ctl`` and ``jobs`` go through an agent's API (``--url``) or, with ``--mongodb-uri``, through
the same services the API uses, straight on MongoDB; the queue commands (``dlq``, ``get``,
``cancel``, ``enqueue``, ``doctor``) use the work collection of ``MONGODB_URI``.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pulling_agent.cli.options import fail, settings
from pulling_agent.config import load_settings
from pulling_agent.errors import ConfigError, PullingAgentError, StoreUnavailable
from pulling_agent.tokens import admin_token

if TYPE_CHECKING:  # loaded by the commands that use them: --help and HTTP calls stay light
    from pulling_agent.config import Settings
    from pulling_agent.fleet.service import ClusterService
    from pulling_agent.queue.database import Client
    from pulling_agent.queue.mongo import MongoWorkStore
    from pulling_agent.scheduler.service import JobService

T = TypeVar("T")
HTTP_TIMEOUT = 10.0


class CtlError(PullingAgentError):
    """A control call failed; the message says why."""


def identity() -> str:
    """Who is calling, for the audit trail: ``cli:user@host``."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def http(method: str, url: str, path: str, token: str | None, **params: Any) -> Any:
    """Call an agent's API; the JSON answer, or :class:`CtlError` saying why not."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise CtlError(f"--url must be an http:// or https:// address (got {url!r})")
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
    full = f"{url.rstrip('/')}{path}" + (f"?{query}" if query else "")
    request = urllib.request.Request(full, method=method)  # noqa: S310 - operator-given URL
    request.add_header("X-Pulling-Agent", "ctl")  # a token-less API accepts POSTs with it
    token = token or admin_token(os.environ.get("API_TOKENS", ""))  # inside an agent's pod
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except (ValueError, AttributeError):
            detail = exc.reason
        raise CtlError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CtlError(
            f"cannot reach {url} ({reason}); is an agent's API there? "
            "Use --url, or --mongodb-uri to go straight to MongoDB"
        ) from None


class Direct:
    """The services ``--mongodb-uri`` reaches without an agent."""

    def __init__(self, cluster: ClusterService, jobs: JobService) -> None:
        self.cluster = cluster
        self.jobs = jobs


def direct(action: Callable[[Direct], Awaitable[T]], uri: str) -> T:
    """Run ``action`` on the fleet's services over MongoDB at ``uri``; :class:`CtlError`
    when the settings are invalid or MongoDB cannot be reached."""
    from pulling_agent.bootstrap import cluster_service, job_service
    from pulling_agent.queue.clock import ServerClock
    from pulling_agent.queue.database import run_with_client

    try:
        loaded = load_settings(mongodb_uri=uri)
    except ConfigError as exc:
        raise CtlError(str(exc)) from None

    async def go(client: Client) -> T:
        now = (await ServerClock.of(client).ensure()).now  # MongoDB's time, not this host's
        return await action(
            Direct(cluster_service(loaded, client, now), job_service(loaded, client, now))
        )

    try:
        return run_with_client(loaded, go)
    except StoreUnavailable as exc:
        raise CtlError(str(exc)) from None


def with_store(
    action: Callable[[MongoWorkStore], Awaitable[T]], loaded: Settings | None = None
) -> T:
    """Run ``action`` on the work collection of ``MONGODB_URI`` (``loaded``: the settings the
    command read already); an unreachable server or a refusal exits 1 with one line (the
    password never shown)."""
    from pulling_agent.queue.clock import ServerClock
    from pulling_agent.queue.database import run_with_client
    from pulling_agent.queue.mongo import MongoWorkStore

    loaded = loaded or settings()

    async def go(client: Client) -> T:
        collection = client[loaded.mongodb_database][loaded.mongodb_collection]
        store = MongoWorkStore(collection)
        store.clock = (await ServerClock.of(client).ensure()).now  # MongoDB's, not this host's
        return await action(store)

    try:
        return run_with_client(loaded, go)
    except StoreUnavailable as exc:
        raise fail(str(exc), 1) from None
