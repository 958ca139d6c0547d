"""Connecting to MongoDB, and what the server says it is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConfigurationError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from pulling_agent import __version__
from pulling_agent.config import ChangeStreams, Settings
from pulling_agent.errors import ConfigError, InvalidJob, StoreUnavailable
from pulling_agent.text import one_line

Client = AsyncMongoClient[dict[str, Any]]
T = TypeVar("T")
QUICK_TIMEOUT_MS = 5_000  # a command-line tool gives up on an unreachable server this soon


def open_client(settings: Settings, *, quick: bool = False, **options: Any) -> Client:
    """A client for ``MONGODB_URI``; connects lazily, datetimes come back timezone-aware.
    Driver options (timeouts, TLS, replicaSet, ...) belong in the URI; ``quick`` (for the
    command line) caps server selection and connecting at 5 s whatever the URI says."""
    if quick:
        options.setdefault("serverSelectionTimeoutMS", QUICK_TIMEOUT_MS)
        options.setdefault("connectTimeoutMS", QUICK_TIMEOUT_MS)
    try:
        return AsyncMongoClient(
            settings.uri, tz_aware=True, appname=f"pulling-agent/{__version__}", **options
        )
    except (ConfigurationError, ValueError) as exc:  # the driver could not parse the URI
        raise ConfigError(
            f"MONGODB_URI cannot be used ({describe_error(exc, settings.secrets())}): "
            "check host:port and options (key=value), and escape '@', ':' and '/' in the "
            "user and password (p@ss is p%40ss)"
        ) from None


CLOSE_SECONDS = 1.0


async def close_client(client: Client, seconds: float = CLOSE_SECONDS) -> bool:
    """Close ``client``, abandoning the close after ``seconds``: with the server gone,
    ``AsyncMongoClient.close()`` takes 30 s (measured, pymongo 4.20) and may not end at a
    cancellation. Returns whether it closed in time."""
    closing = asyncio.create_task(client.close())
    done, _ = await asyncio.wait({closing}, timeout=seconds)
    return bool(done)


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """One short line for a driver error, secrets replaced: a server-selection timeout's
    900-character topology dump becomes the first server's reason."""
    text = str(exc)
    if isinstance(exc, ServerSelectionTimeoutError):
        text = text.split(", Timeout:", 1)[0].split(" (configured timeouts", 1)[0]
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return f"{type(exc).__name__}: {one_line(text, 300)}"


def run_with_client(settings: Settings, action: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``action`` with a quick client (for a CLI command), closing it afterwards.
    Raises :class:`StoreUnavailable` with one line when MongoDB cannot be used."""

    async def go() -> T:
        client = open_client(settings, quick=True)
        try:
            return await action(client)
        finally:
            await close_client(client)

    try:
        return asyncio.run(go())
    except ConfigError as exc:
        raise StoreUnavailable(str(exc)) from None
    except InvalidJob:
        raise  # the input, found wrong once the server answered: the command says so
    except Exception as exc:  # a driver error's text carries no password; scrub anyway
        raise StoreUnavailable(describe_failure(exc, settings.secrets())) from None


AUTHENTICATION_FAILED = 18


def describe_failure(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """One line, naming ``MONGODB_URI``, for a command that failed against it, with what to
    check: the agent's start-up and every CLI command say the same."""
    text = describe_error(exc, secrets)
    if isinstance(exc, OperationFailure) and exc.code == AUTHENTICATION_FAILED:
        return (
            f"MONGODB_URI: MongoDB refused the credentials ({text}); check the user, password "
            "and authSource"
        )
    if isinstance(exc, PyMongoError):
        return f"MONGODB_URI: MongoDB error: {text}"
    return (
        f"MONGODB_URI: the server's answer could not be used ({text}); if the URI carries "
        "credentials, does the server support authentication?"
    )


async def supports_change_streams(client: Client) -> bool:
    """A replica-set member or a mongos supports change streams; a standalone does not."""
    return offers_change_streams(await client.admin.command("hello"))


def offers_change_streams(hello: Mapping[str, Any]) -> bool:
    """What a ``hello`` answer says: a replica-set member or a mongos."""
    return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"


async def use_change_streams(client: Client, mode: ChangeStreams) -> bool:
    if mode is ChangeStreams.OFF:
        return False
    if mode is ChangeStreams.ALWAYS:
        return True
    return await supports_change_streams(client)
