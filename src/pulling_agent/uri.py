"""A MongoDB connection string as something safe to show: every secret it can carry
redacted (the password, and the query options that hold passwords or tokens), the hosts
alone for messages, and the list of secret strings that log scrubbing must replace."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote

REDACTED = "***"
# Query options whose value is secret (pymongo's URI options, compared case-insensitively):
# passwords of TLS keys and proxies, and authMechanismProperties, which may carry an
# AWS_SESSION_TOKEN. Any option named like a password, a token or a secret counts too.
SECRET_OPTIONS = frozenset(
    {
        "tlscertificatekeyfilepassword",
        "sslpemkeypassword",
        "sslclientcertificatekeypassword",
        "proxypassword",
        "authmechanismproperties",
    }
)
_SECRET_WORDS = ("password", "token", "secret")


def is_secret_option(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_OPTIONS or any(word in lowered for word in _SECRET_WORDS)


def _split(uri: str) -> tuple[str, str, str, str, str]:
    """``scheme``, ``userinfo``, ``hosts``, ``path``, ``query`` (without separators)."""
    scheme, _, rest = uri.partition("://")
    rest, _, query = rest.partition("?")
    userinfo, _, hostpath = rest.rpartition("@")
    hosts, slash, path = hostpath.partition("/")
    return scheme, userinfo, hosts, slash + path, query


def redact_uri(uri: str) -> str:
    """The URI with its password and every secret query option replaced by ``***``."""
    if "://" not in uri:
        return uri
    scheme, userinfo, hosts, path, query = _split(uri)
    shown = f"{scheme}://"
    if userinfo:
        user = userinfo.split(":", 1)[0]
        shown += f"{user}:{REDACTED}@" if ":" in userinfo else f"{user}@"
    shown += hosts + path
    if query:
        parts = []
        for part in query.split("&"):
            name, eq, _value = part.partition("=")
            parts.append(f"{name}={REDACTED}" if eq and is_secret_option(unquote(name)) else part)
        shown += "?" + "&".join(parts)
    return shown


def uri_hosts(uri: str) -> str:
    """``host:port,...`` of the URI: nothing secret."""
    return _split(uri)[2]


def uri_secrets(uri: str) -> list[str]:
    """Every secret string in the URI, as written and URL-decoded (and re-encoded), so
    that a log line or an error quoting any form of it can be scrubbed."""
    if "://" not in uri:
        return []
    _scheme, userinfo, _hosts, _path, query = _split(uri)
    found: list[str] = []
    if ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for part in query.split("&") if query else []:
        name, eq, value = part.partition("=")
        if eq and value and is_secret_option(unquote(name)):
            found.append(value)
    for name, value in parse_qsl(query, keep_blank_values=False):
        if is_secret_option(name):
            found.append(value)
            found.extend(v.split(":", 1)[1] for v in value.split(",") if ":" in v)
    variants = {form for s in found for form in (s, unquote(s), quote(unquote(s), safe=""))}
    return sorted((s for s in variants if len(s) >= 3), key=len, reverse=True)
