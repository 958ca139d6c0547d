"""A workflow: an order packed, then shipped, then invoiced (dependencies), and a batch of
thumbnails whose report runs once after the last one ended (fan-in).

    # the producer
    MONGODB_URI=mongodb://localhost:27017 MONGODB_DATABASE=app MONGODB_COLLECTION=work \\
        python -m examples.workflow
    # an agent for it
    HANDLERS=examples.workflow:worker pulling-agent run

Running the producer twice enqueues nothing new for the order (keys); a second batch of
thumbnails gets its own report.
"""

from __future__ import annotations

import os
from typing import Any

from pymongo import MongoClient

from pulling_agent import Context, Fail, Worker
from pulling_agent.client import Job, enqueue, enqueue_many

worker = Worker()


@worker.handler("pack")
async def pack(document: dict[str, Any], ctx: Context) -> None:
    ctx.set_progress({"packed": document.get("order")})


@worker.handler("ship")
async def ship(document: dict[str, Any], ctx: Context) -> None:
    """Runs only once ``pack`` is processed; never if it failed (then this is cancelled)."""
    ctx.set_progress({"shipped": document.get("order")})


@worker.handler("invoice")
async def invoice(document: dict[str, Any], ctx: Context) -> None:
    ctx.set_progress({"invoiced": document.get("order")})


@worker.handler("thumbnail", concurrency=4)
def thumbnail(document: dict[str, Any], ctx: Context) -> None:
    if document.get("corrupt"):
        raise Fail("not an image")  # ends failed at once: the batch still completes


@worker.handler("report")
async def report(document: dict[str, Any], ctx: Context) -> None:
    """The batch's then job: runs once, after every thumbnail ended, with the counts."""
    summary = ctx.batch or {}
    counts = {o: summary.get(o) for o in ("size", "processed", "failed", "cancelled")}
    ctx.log.info("thumbnails done", **counts)  # e.g. email the report


def main() -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(os.environ["MONGODB_URI"], tz_aware=True)
    work = client[os.environ["MONGODB_DATABASE"]][os.environ["MONGODB_COLLECTION"]]
    packed = enqueue(work, {"order": 1001}, type="pack", key="pack-1001")
    shipped = enqueue(work, {"order": 1001}, type="ship", key="ship-1001", after=[packed.id])
    enqueue(work, {"order": 1001}, type="invoice", key="invoice-1001", after=[shipped.id])
    images = [Job({"image": f"img-{n}.png", "corrupt": n == 3}, type="thumbnail") for n in range(8)]
    batch = enqueue_many(work, images, then=Job({"what": "thumbnails"}, type="report"))
    print("order 1001: pack", packed.id, "ship", shipped.id)
    print("batch", batch.batch_id, "of", len(batch), "thumbnails; report", batch.then.id)
    client.close()


if __name__ == "__main__":
    main()
