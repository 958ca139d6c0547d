"""Job functions the scheduler tests load by name."""

from typing import Any

fired: list[tuple[str, Any]] = []


async def record(ctx: Any, tag: str = "") -> None:
    fired.append((ctx.job_id, ctx.fire_time))


def sync_record(ctx: Any) -> None:
    fired.append((ctx.job_id, ctx.fire_time))


def explode(ctx: Any) -> None:
    raise RuntimeError("job failed on purpose")
