"""A MongoDB outage as the runtime sees it: readiness drops, claiming stops and one probe
at a time tests the store, liveness stays fresh, the first success restores everything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymongo.errors import AutoReconnect

from pulling_agent.queue.memory import MemoryWorkStore
from pulling_agent.runtime.health import LIVENESS, READINESS, check
from tests.conftest import async_wait_until
from tests.unit.test_agent import Running, pending, start, statuses

__all__ = ["start"]


class FlakyStore(MemoryWorkStore):
    """The in-memory store, unreachable while ``down``."""

    down = False
    attempts: list[str]

    def _gate(self, call: str) -> None:
        self.attempts.append(call)
        if self.down:
            raise AutoReconnect(f"{call}: connection refused")

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self._gate("claim")
        return await super().claim(*args, **kwargs)

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        self._gate("complete")
        return await super().complete(*args, **kwargs)

    async def renew(self, *args: Any, **kwargs: Any) -> Any:
        self._gate("renew")
        return await super().renew(*args, **kwargs)

    async def ping(self) -> None:
        self._gate("ping")
        await super().ping()


async def test_readiness_follows_the_store(start: Callable[..., Running], tmp_path: Path) -> None:
    store = FlakyStore(pending(5))
    store.attempts = []
    run = start(store, store_outage_seconds=0.2)
    health = tmp_path / "health"
    await async_wait_until(lambda: statuses(store) == {"processed": 5})
    await async_wait_until((health / READINESS).exists)
    store.down = True
    await async_wait_until(lambda: not (health / READINESS).exists(), what="readiness dropped")
    liveness = (health / LIVENESS).read_text()
    assert "store=unavailable since" in liveness and "connection refused" in liveness
    assert run.agent.state.value == "running", "the state is unchanged: only readiness drops"
    assert check(health, 30).healthy, "liveness stays fresh: the process is fine"
    snap = run.agent.snapshot()
    assert snap["ready"] is False and snap["store"]["available"] is False
    store.attempts.clear()
    await async_wait_until(lambda: store.attempts.count("ping") >= 2, what="probes")
    assert "claim" not in store.attempts, "no claims while the store is unavailable"
    store.insert(pending(3))
    store.down = False
    await async_wait_until((health / READINESS).exists, what="readiness restored")
    await async_wait_until(lambda: statuses(store) == {"processed": 8})
    assert "store=ok" in (health / LIVENESS).read_text()
    assert await run.stop() == 0


class AppliedThenLost(MemoryWorkStore):
    """The first completion write is applied, then its reply is lost."""

    lost_reply = True

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        applied = await super().complete(*args, **kwargs)
        if self.lost_reply:
            self.lost_reply = False
            raise AutoReconnect("connection closed before the reply")
        return applied


async def test_an_outcome_applied_before_its_error_is_not_a_lost_lease(
    start: Callable[..., Running],
) -> None:
    """Before: the retry modified nothing and the agent logged "lease lost" for outcomes
    that were in fact written."""
    store = AppliedThenLost(pending(4))
    run = start(store, batch_size=4)
    await async_wait_until(lambda: statuses(store) == {"processed": 4})
    await async_wait_until(lambda: run.agent.pipeline.counters.processed == 4)
    assert run.agent.pipeline.counters.lost_leases == 0
    assert "written" in store.calls
    assert await run.stop() == 0
