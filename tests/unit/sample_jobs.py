"""Job functions the scheduler tests load by name."""

from typing import Any

fired: list[tuple[str, Any]] = []


async def record(ctx: Any, tag: str = "") -> None:
    fired.append((ctx.job_id, ctx.fire_time))


def sync_record(ctx: Any) -> None:
    fired.append((ctx.job_id, ctx.fire_time))


def explode(ctx: Any) -> None:
    raise RuntimeError("job failed on purpose")


async def enqueue_one(ctx: Any) -> None:
    """A scheduled producer: one document per run, in the agent's database."""
    from pulling_agent.client import aio

    await aio.enqueue(ctx.db["work"], {"from": ctx.run_id})
