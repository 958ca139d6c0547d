"""Example handlers. Run one with:

    HANDLER=examples.handlers:send_invoice pulling-agent run

A handler receives the work document (a dict) and returns nothing. Raising an exception
marks the attempt failed: the document is retried with backoff, and after MAX_ATTEMPTS it
is kept in the dead letter (``status: failed``) - never lost. Delivery is at-least-once: a
handler can run again for a document whose previous agent died mid-way, so make it
idempotent (e.g. key external side effects on the document's ``_id``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pulling_agent import Context, Fail, Retry, Skip

log = logging.getLogger(__name__)


async def send_invoice(document: dict[str, Any]) -> None:
    """An async handler: runs on the agent's event loop, CONCURRENCY at a time."""
    if "customer" not in document:
        raise ValueError("document has no customer")  # retried, then dead-lettered
    await asyncio.sleep(0.01)  # stand-in for an HTTP call keyed on document["_id"]


def resize_image(document: dict[str, Any]) -> None:
    """A sync handler: runs in a thread pool of CONCURRENCY threads."""
    log.info("resizing %s", document.get("path"))


class QuotaExceeded(Exception):
    """Stand-in for a downstream API's "slow down"."""


async def charge_card(document: dict[str, Any], ctx: Context) -> None:
    """A handler that takes the context: explicit outcomes, an idempotency key, progress.

    HANDLER=examples.handlers:charge_card pulling-agent run
    """
    if document.get("amount") is None:
        raise Fail("no amount: nothing to charge")  # straight to the dead letter
    if document.get("duplicate_of"):
        raise Skip(f"duplicate of {document['duplicate_of']}")  # status: cancelled
    try:
        await asyncio.sleep(0.01)  # stand-in for: payments.charge(..., idempotency_key=...)
        ctx.log.info("charged", idempotency_key=ctx.idempotency_key, attempt=ctx.attempt)
    except QuotaExceeded:
        raise Retry(after=60, reason="payment API quota") from None  # not a failure
    await ctx.progress({"charged": True})


# Routing by type: one agent for both kinds of document in one collection,
#   HANDLERS="invoice=examples.handlers:send_invoice,image=examples.handlers:resize_image"
#   TYPE_CONCURRENCY="image=2"   # at most two resizes at once
