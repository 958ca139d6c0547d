"""Typed handlers in code (the job factory): one agent runs every type registered here.

    HANDLERS=examples.worker:worker pulling-agent run

Documents carry their type in ``type`` (``TYPE_FIELD``); the agent claims only the types
registered below. Put work in with examples/producer.py or ``pulling-agent enqueue``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pulling_agent import Context, Fail, Retry, Skip, Worker

worker = Worker()


class RateLimited(Exception):
    """Stand-in for a downstream API's "429 Too Many Requests"."""


async def deliver(to: str, subject: str, idempotency_key: str) -> None:
    """Stand-in for an email API call; raises RateLimited when told to."""
    if to.endswith("@busy.example"):
        raise RateLimited(to)
    await asyncio.sleep(0.005)


@worker.handler("email")
async def send_email(document: dict[str, Any], ctx: Context) -> None:
    """An async handler with the context: an idempotency key for the email API, explicit
    outcomes, progress."""
    to = document.get("to")
    if not isinstance(to, str) or "@" not in to:
        raise Fail(f"no valid address in 'to': {to!r}")  # dead letter, no retries
    if document.get("unsubscribed"):
        raise Skip("recipient unsubscribed")  # final status: cancelled
    try:
        await deliver(to, str(document.get("subject", "")), ctx.idempotency_key)
    except RateLimited:
        if ctx.attempt >= ctx.max_attempts:
            raise Fail("still rate-limited after every attempt") from None
        # later, at a time of our choosing; the attempt is not consumed
        raise Retry(after=30, reason="email API rate limit") from None
    ctx.set_progress({"sent": True})
    ctx.log.info("email sent", to=to)


@worker.handler("invoice", concurrency=2)
def render_invoice(document: dict[str, Any], ctx: Context) -> None:
    """A sync handler (runs in a thread), at most two at a time on this agent."""
    lines = document.get("lines")
    if not isinstance(lines, list):
        raise TypeError("invoice without lines")  # retried with backoff, then dead letter
    total = sum(float(line.get("amount", 0)) for line in lines if isinstance(line, dict))
    ctx.log.info("invoice rendered", total=total, idempotency_key=ctx.idempotency_key)
