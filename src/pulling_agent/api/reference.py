"""Render the API reference (docs/API-REFERENCE.md) from the OpenAPI document.

    python -m pulling_agent.api.reference > docs/API-REFERENCE.md

A test keeps the committed file equal to this output, so the docs follow the code.
"""

from __future__ import annotations

from typing import Any, cast

from pulling_agent.api.app import create_app
from pulling_agent.api.auth import TokenAuth

MUTATING = {"post", "put", "patch", "delete"}


def openapi() -> dict[str, Any]:
    """The OpenAPI document; routes do not touch their services to describe themselves."""
    app = create_app(
        cast(Any, None), cast(Any, None), cast(Any, None), TokenAuth({}), lambda: b"", []
    )
    return app.openapi()


def _param(p: dict[str, Any]) -> str:
    schema = p.get("schema", {})
    variants = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    kinds = [s.get("type", "") for s in variants]
    limits = [
        f"{k} {v[k]}" for v in variants for k in ("minimum", "maximum", "maxLength") if k in v
    ]
    default = f", default `{schema['default']}`" if schema.get("default") not in (None, "") else ""
    extra = f" ({', '.join(limits)})" if limits else ""
    return f"| `{p['name']}` | {'/'.join(kinds)}{extra}{default} | {p.get('description', '')} |"


def render() -> str:
    spec = openapi()
    lines = [
        "# API reference",
        "",
        f"Generated from the OpenAPI document of pulling-agent {spec['info']['version']} "
        "(`python -m pulling_agent.api.reference`); every agent serves it live at "
        "`/openapi.json` on `API_PORT` (default 8000).",
        "",
        "When `API_TOKENS` is set, every `/api/*` route needs `Authorization: Bearer "
        "<token>`: a `read` or `admin` token for GET, an `admin` token for POST (401 without "
        "a bearer token, 403 with an unknown one or a `read` token on a POST). `/healthz` "
        "and `/readyz` are open; `/metrics` is open unless `METRICS_REQUIRE_TOKEN=true`. "
        "With no tokens the API listens on 127.0.0.1 only and refuses (403) a `Host` that "
        "is not loopback, an `Origin` other than the agent's own, and a POST without "
        "`Content-Type: application/json` or an `X-Pulling-Agent` header (what a browser "
        "could send cross-site). Errors are "
        'JSON: `{"detail": ...}`. 503 means MongoDB is unreachable (or, for `/readyz`, '
        "that the agent cannot work). Any route may also answer 413 (a body over 16 KiB: "
        "the API takes its input in the query string), 429 with `Retry-After` (after 10 "
        "wrong tokens from one address within a minute) and 503 (over 100 connections).",
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines.append(f"## `{method.upper()} {path}`")
            lines.append("")
            if method in MUTATING:
                lines.append("Requires an `admin` token when `API_TOKENS` is set.")
                lines.append("")
            lines.append(op.get("description") or op.get("summary", ""))
            lines.append("")
            params = op.get("parameters", [])
            if params:
                lines += ["| query parameter | type | meaning |", "|---|---|---|"]
                lines += [_param(p) for p in params]
                lines.append("")
            codes = ", ".join(sorted(op.get("responses", {})))
            lines.append(f"Responses: {codes}.")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
