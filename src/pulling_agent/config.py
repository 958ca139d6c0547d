"""Settings from the environment (seed names and defaults kept), validation, secret redaction.

:func:`load_settings` is the only entry point that reads the environment. It raises
:class:`ConfigError` with one line that names the variable and the fix; it never echoes the
value of a secret.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from pulling_agent.encoding import parse_duration
from pulling_agent.errors import ConfigError
from pulling_agent.tokens import Principal, parse_tokens
from pulling_agent.uri import redact_uri, uri_hosts, uri_secrets

__all__ = ["ChangeStreams", "LogFormat", "Settings", "load_settings", "redact_uri"]


class ChangeStreams(StrEnum):
    """``ENABLE_CHANGE_STREAMS``: ``true`` uses them when the server is a replica set or
    mongos, ``false`` never, ``always`` opens them whatever the server reports."""

    AUTO = "true"
    OFF = "false"
    ALWAYS = "always"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


def _default_agent_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


PositiveFloat = Annotated[float, Field(gt=0)]
MAX_SLOTS = 10_000  # the largest fleet-wide limit: slots of one type or key value
# fields the agent writes: neither TYPE_FIELD nor CONCURRENCY_KEY may name one
AGENT_FIELDS = frozenset(
    {"status", "attempts", "available_at", "lease", "_id", "error", "errors"}
    | {"limit_slot", "key_slot"}
)
# Retention below an hour would let MongoDB's TTL monitor delete a dependency before a sweep
# (SWEEP_INTERVAL, a minute by default) repaired an agent's crash between its outcome and
# its dependents (queue.workflow); 10 years is the longest delay a producer may ask for.
MIN_RETAIN, MAX_RETAIN = 3_600, 3_650 * 86_400
COLLECTION_FIELDS = (
    "mongodb_collection",
    "control_collection",
    "agents_collection",
    "jobs_collection",
    "job_runs_collection",
)

_SECRET_FIELDS = frozenset({"mongodb_uri", "api_tokens"})
BAD_DATABASE_CHARS = '/\\. "$*<>:|?\0'  # what MongoDB refuses in a database name

_HINTS: dict[str, str] = {
    "mongodb_uri": "set it to a connection string such as mongodb://host:27017/?replicaSet=rs0",
    "mongodb_database": "set it to the database that holds the work collection",
    "mongodb_collection": "set it to the collection that holds the work documents",
    "handler": "set it to module:function, e.g. myapp.jobs:handle",
    "handlers": "use type=module:function entries separated by commas, "
    "e.g. email=myapp.jobs:send_email,invoice=myapp.jobs:invoice, or module:attribute "
    "naming a pulling_agent.Worker",
    "type_concurrency": "use type=number entries, e.g. invoice=2",
    "rate_limit": "use documents per second, a number above 0 such as 50 or 0.5 (or unset it)",
    "fleet_rate_limit": "use documents per second for the whole fleet, a number above 0 "
    "such as 200 (the same on every agent), or unset it",
    "type_rate_limit": "use type=documents-per-second entries, e.g. email=5,invoice=0.5",
    "key_concurrency": f"use a whole number from 1 to {MAX_SLOTS} (documents of one key value "
    "processing at once across the fleet), or unset it",
    "concurrency_key": "set it to a field of your documents, e.g. tenant, or unset it",
    "log_level": "use DEBUG, INFO, WARNING or ERROR",
    "log_format": "use auto, json or console",
    "enable_change_streams": "use true (auto-detect), false or always",
    **dict.fromkeys(
        ("retain_processed", "retain_failed", "retain_cancelled"),
        "use a duration such as 7d or 12h (at least 1h), or leave it unset to keep "
        "finished documents for ever",
    ),
    "api_tokens": "use name:token[:read|admin] entries separated by commas, tokens of 16+ "
    "characters without ':'",
}


class Settings(BaseSettings):
    """Everything an agent needs, read from environment variables of the same name."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=False
    )

    mongodb_uri: SecretStr
    mongodb_database: str = Field(min_length=1)
    mongodb_collection: str = Field(min_length=1)
    handler: str = ""
    handlers: str = ""
    type_field: str = Field(default="type", min_length=1, max_length=200)
    type_concurrency: str = ""
    rate_limit: float | None = Field(default=None, gt=0, le=1_000_000)
    type_rate_limit: str = ""
    type_fleet_concurrency: str = ""  # type=slots across the fleet (queue.limits)
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=200)
    key_concurrency: int | None = Field(default=None, ge=1, le=MAX_SLOTS)
    type_key_concurrency: str = ""
    fair_claiming: bool = True  # with CONCURRENCY_KEY: key values take turns (queue.fairness)
    fleet_rate_limit: float | None = Field(default=None, gt=0, le=1_000_000)
    poll_interval: PositiveFloat = 5.0
    sweep_interval: PositiveFloat = 60.0
    store_outage_seconds: PositiveFloat = 10.0
    batch_size: int = Field(default=100, ge=1, le=10_000)
    result_max_bytes: int = Field(default=16_384, ge=0, le=8_388_608)
    concurrency: int = Field(default=8, ge=1, le=1_000)
    shutdown_timeout: float = Field(default=30.0, ge=0)
    heartbeat_interval: PositiveFloat = 5.0
    progress_interval: PositiveFloat = 60.0
    lease_seconds: float = Field(default=30.0, ge=1)
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=5.0, ge=0)
    retry_max_seconds: float = Field(default=600.0, ge=0)
    handler_timeout: float | None = Field(default=None, gt=0)
    max_abandoned_threads: int = Field(default=8, ge=1, le=1_000)
    health_dir: Path = Path("/tmp/health")  # noqa: S108 - the seed's documented path
    control_file: Path = Path("/tmp/control/state")  # noqa: S108 - the seed's documented path
    control_file_interval: PositiveFloat = 2.0
    agent_id: str = Field(default_factory=_default_agent_id, min_length=1, max_length=200)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = LogFormat.AUTO
    enable_distributed_control: bool = True
    enable_change_streams: ChangeStreams = ChangeStreams.AUTO
    control_polling_interval: PositiveFloat = 10.0
    control_collection: str = Field(default="agent_control", min_length=1)
    agents_collection: str = Field(default="agent_registry", min_length=1)
    enable_api: bool = True
    enable_console: bool = True
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_host: str | None = None
    api_tokens: SecretStr = SecretStr("")
    metrics_require_token: bool = False
    # a document's trace in your tracing UI (console, get): {trace_id} is replaced
    trace_url: str = Field(default="", max_length=2_000)
    jobs_file: Path | None = None
    jobs: str = ""  # module:attribute, a list of JobFactory jobs
    jobs_collection: str = Field(default="agent_jobs", min_length=1)
    job_runs_collection: str = Field(default="agent_job_runs", min_length=1)
    job_history_days: float = Field(default=14, gt=0)
    job_lease_seconds: float = Field(default=30, ge=1)
    retain_processed: float | None = None  # seconds; None: keep for ever (queue.retention)
    retain_failed: float | None = None
    retain_cancelled: float | None = None

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: SecretStr) -> SecretStr:
        parse_tokens(value.get_secret_value())
        return value

    @field_validator("jobs_file", mode="before")
    @classmethod
    def _blank_path(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("rate_limit", "fleet_rate_limit", mode="before")
    @classmethod
    def _blank_rate(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_host", mode="before")
    @classmethod
    def _blank_host(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trace_url")
    @classmethod
    def _trace_url(cls, value: str) -> str:
        value = value.strip()
        if value and (
            not value.startswith(("http://", "https://"))
            or "{trace_id}" not in value
            or any(c.isspace() or ord(c) < 32 for c in value)
        ):
            raise ValueError(
                "give an http(s) URL with {trace_id} in it, e.g. "
                "https://jaeger.example.com/trace/{trace_id}, or leave it empty"
            )
        return value

    @field_validator("mongodb_database")
    @classmethod
    def _database_name(cls, value: str) -> str:
        bad = sorted(set(value) & set(BAD_DATABASE_CHARS))
        if bad:
            raise ValueError(f"a database name cannot contain {bad[0]!r}")
        if len(value.encode()) > 63:
            raise ValueError("a database name has at most 63 bytes")
        return value

    @field_validator(*COLLECTION_FIELDS)
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if "$" in value or "\0" in value:
            raise ValueError("a collection name cannot contain '$' or a NUL character")
        if value.startswith(("system.", ".")) or value.endswith("."):
            raise ValueError(
                "a collection name cannot start with 'system.' or '.', or end with '.'"
            )
        return value

    @field_validator("handlers")
    @classmethod
    def _handlers_parse(cls, value: str) -> str:
        if not _registry_spec(value):
            parse_pairs(value)
        return value

    @field_validator("type_field")
    @classmethod
    def _type_field_safe(cls, value: str) -> str:
        if value.startswith("$") or value in AGENT_FIELDS:
            raise ValueError("must be a field of your documents (not _id or an agent field)")
        return value

    @field_validator("concurrency_key", mode="before")
    @classmethod
    def _key_field_safe(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and (
            value.startswith("$") or value in AGENT_FIELDS or "." in value or "\0" in value
        ):
            raise ValueError(
                "must be a top-level field of your documents (not _id, not an agent field, "
                "no '.' or '$')"
            )
        return value

    @field_validator("key_concurrency", mode="before")
    @classmethod
    def _blank_count(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _fleet_limits_valid(self) -> Settings:
        """``TYPE_FLEET_CONCURRENCY`` (0 holds a type's documents back) and the key limits,
        which need ``CONCURRENCY_KEY``: one line naming the variable and the form."""
        for variable, raw, least in (
            ("TYPE_FLEET_CONCURRENCY", self.type_fleet_concurrency, 0),
            ("TYPE_KEY_CONCURRENCY", self.type_key_concurrency, 1),
        ):
            for kind, count in _named_pairs(variable, raw, "invoice=3").items():
                if not count.isdigit() or not least <= int(count) <= MAX_SLOTS:
                    raise ValueError(
                        f"{variable}={kind}={count}: use a whole number from {least} to "
                        f"{MAX_SLOTS}, e.g. invoice=3"
                    )
        if self.concurrency_key is not None and self.concurrency_key == self.type_field:
            raise ValueError(
                f"CONCURRENCY_KEY={self.concurrency_key} is TYPE_FIELD: limit a type's documents "
                "with TYPE_FLEET_CONCURRENCY, and give CONCURRENCY_KEY another field"
            )
        for variable, given in (
            ("KEY_CONCURRENCY", self.key_concurrency is not None),
            ("TYPE_KEY_CONCURRENCY", bool(self.type_key_concurrency.strip())),
        ):
            if given and self.concurrency_key is None:
                raise ValueError(
                    f"{variable} needs CONCURRENCY_KEY: set it to the field whose values "
                    "are limited (e.g. CONCURRENCY_KEY=tenant), or unset it"
                )
        return self

    @property
    def fleet_limits(self) -> dict[str, int]:
        """``TYPE_FLEET_CONCURRENCY`` as ``{type: slots across the fleet}``."""
        return {k: int(v) for k, v in parse_pairs(self.type_fleet_concurrency).items()}

    @property
    def type_key_limits(self) -> dict[str, int]:
        """``TYPE_KEY_CONCURRENCY`` as ``{type: slots per key value}``."""
        return {k: int(v) for k, v in parse_pairs(self.type_key_concurrency).items()}

    @model_validator(mode="after")
    def _type_limits_known(self) -> Settings:
        limits = _named_pairs("TYPE_CONCURRENCY", self.type_concurrency, "email=2,invoice=1")
        registry = self.handlers_registry is not None  # its types are known once imported
        handlers = self.handler_map
        for kind, raw in limits.items():
            if kind not in handlers and not registry:
                raise ValueError(
                    f"TYPE_CONCURRENCY names {kind!r}, which HANDLERS does not: "
                    "give a limit only to a type this agent handles"
                )
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"TYPE_CONCURRENCY={kind}={raw}: use a whole number >= 1")
        rates = _named_pairs("TYPE_RATE_LIMIT", self.type_rate_limit, "email=5,invoice=0.5")
        for kind, raw in rates.items():
            if kind not in handlers and not registry:
                raise ValueError(
                    f"TYPE_RATE_LIMIT names {kind!r}, which HANDLERS does not: "
                    "give a limit only to a type this agent handles"
                )
            if _rate(raw) is None:
                raise ValueError(
                    f"TYPE_RATE_LIMIT={kind}={raw}: use documents per second above 0, e.g. 5 or 0.5"
                )
        return self

    @property
    def handler_map(self) -> dict[str, str]:
        """``HANDLERS`` as ``{type: module:function}`` (empty for a registry)."""
        return {} if self.handlers_registry else parse_pairs(self.handlers)

    @property
    def handlers_registry(self) -> str | None:
        """``HANDLERS=module:attribute`` naming a :class:`pulling_agent.Worker`, or None."""
        return self.handlers.strip() if _registry_spec(self.handlers) else None

    @property
    def type_limits(self) -> dict[str, int]:
        return {k: int(v) for k, v in parse_pairs(self.type_concurrency).items()}

    @property
    def type_rates(self) -> dict[str, float]:
        """``TYPE_RATE_LIMIT`` as ``{type: documents per second}``."""
        return {k: float(v) for k, v in parse_pairs(self.type_rate_limit).items()}

    @property
    def served_types(self) -> list[str | None] | None:
        """The values of ``TYPE_FIELD`` this agent claims (``None`` in the list: documents
        without one, served by ``HANDLER``); ``None``: every document (no ``HANDLERS``), or
        not known before the registry is imported (the handlers then say)."""
        if not self.handlers or self.handlers_registry:
            return None
        types: list[str | None] = [*sorted(self.handler_map)]
        return [*types, None] if self.handler else types

    @model_validator(mode="after")
    def _collections_apart(self) -> Settings:
        """Each collection the agent uses holds one kind of document: the same name for
        two would mix work documents with schedules, heartbeats or control documents."""
        seen: dict[str, str] = {}
        for field in COLLECTION_FIELDS:
            name = getattr(self, field)
            if name in seen:
                raise ValueError(
                    f"{_env_name(field)}={name} is also {_env_name(seen[name])}: give each "
                    "its own collection (the agent's own default to agent_control, "
                    "agent_registry, agent_jobs, agent_job_runs)"
                )
            seen[name] = field
        return self

    @model_validator(mode="after")
    def _no_open_api_without_tokens(self) -> Settings:
        host = self.api_host
        if self.enable_api and host and not self.tokens and not is_loopback(host):
            raise ValueError(
                f"API_HOST={host} needs API_TOKENS: an API without tokens listens on "
                "loopback only (set API_TOKENS=name:token, or leave API_HOST unset)"
            )
        return self

    @property
    def tokens(self) -> dict[str, Principal]:
        """API tokens as ``{token: Principal(name, role)}``."""
        return parse_tokens(self.api_tokens.get_secret_value())

    @property
    def api_bind_host(self) -> str:
        """Where the API listens: all interfaces when tokens are configured (or as
        ``API_HOST`` says), loopback only when they are not."""
        if self.api_host:
            return self.api_host
        return "0.0.0.0" if self.tokens else "127.0.0.1"  # noqa: S104 - protected by tokens

    @field_validator("mongodb_uri")
    @classmethod
    def _uri_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("mongodb", "mongodb+srv"):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("enable_change_streams", mode="before")
    @classmethod
    def _change_streams(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower()
            return {"1": "true", "yes": "true", "0": "false", "no": "false"}.get(lowered, lowered)
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    @field_validator("retain_processed", "retain_failed", "retain_cancelled", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        seconds = parse_duration(value) if isinstance(value, str) else value
        if not isinstance(seconds, int | float) or not MIN_RETAIN <= seconds <= MAX_RETAIN:
            raise ValueError("must be a duration from 1h to 3650d")
        return float(seconds)

    @field_validator("handler_timeout", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() in ("", "0", "none"):
            return None
        return value

    @field_validator("retry_max_seconds")
    @classmethod
    def _max_not_below_base(cls, value: float, info: Any) -> float:
        base = info.data.get("retry_base_seconds")
        if base is not None and value < base:
            raise ValueError("must be at least RETRY_BASE_SECONDS")
        return value

    @property
    def retention(self) -> dict[str, float | None]:
        """Seconds each finished status is kept (None: for ever), for queue.retention."""
        return {
            "processed": self.retain_processed,
            "failed": self.retain_failed,
            "cancelled": self.retain_cancelled,
        }

    @property
    def uri(self) -> str:
        """The connection string, password included: for the driver only."""
        return self.mongodb_uri.get_secret_value()

    @property
    def mongodb_hosts(self) -> str:
        """The hosts of ``MONGODB_URI`` (``host:port,...``), for messages: no credentials."""
        return uri_hosts(self.uri)

    @property
    def redacted_uri(self) -> str:
        return redact_uri(self.uri)

    def secrets(self) -> list[str]:
        """Strings that must never appear in any log line or error message: the URI, its
        password and secret options (in every encoding), the API tokens."""
        hidden = uri_secrets(self.uri)
        whole = [self.uri] if hidden else []  # a URI without secrets is not one
        return [s for s in (*whole, *hidden, *self.tokens) if s]


def _registry_spec(raw: str) -> bool:
    """``HANDLERS`` holds one ``module:attribute`` (a Worker), not ``type=…`` entries."""
    value = raw.strip()
    return bool(value) and "=" not in value and "," not in value and ":" in value


def _rate(raw: str) -> float | None:
    """A rate in documents per second, or None when ``raw`` is not one."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value <= 1_000_000 else None  # NaN fails both comparisons


def parse_pairs(raw: str) -> dict[str, str]:
    """``a=x,b=y`` as ``{"a": "x", "b": "y"}``; ValueError naming a malformed or repeated
    entry."""
    pairs: dict[str, str] = {}
    for position, entry in enumerate(e.strip() for e in raw.split(",") if e.strip()):
        key, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"entry {position + 1} ({entry!r}) is not type=value")
        if key in pairs:
            raise ValueError(f"type {key!r} is given twice")
        pairs[key] = value
    return pairs


def _named_pairs(variable: str, raw: str, example: str) -> dict[str, str]:
    """:func:`parse_pairs` whose error names the variable and shows the form."""
    try:
        return parse_pairs(raw)
    except ValueError as exc:
        raise ValueError(f"{variable}: {exc}; use type=value entries, e.g. {example}") from None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal (``127.0.0.0/8``, ``::1``), parsed: a name
    such as ``127.attacker.example`` is not loopback."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env_name(field: str) -> str:
    return field.upper()


def _describe(error: ErrorDetails) -> str:
    if not error.get("loc"):  # a rule across variables: the message names them
        return str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0])
    name = _env_name(field)
    if error["type"] == "missing":
        return f"{name} is required: {_HINTS.get(field, 'set it')}"
    message = str(error["msg"]).removeprefix("Value error, ")
    hint = _HINTS.get(field)
    got = "" if field in _SECRET_FIELDS else f" (got {error.get('input')!r})"
    return f"{name} is invalid: {message}{got}" + (f"; {hint}" if hint else "")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, with ``overrides`` taking precedence.

    Raises :class:`ConfigError` with one line naming the first bad variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None
