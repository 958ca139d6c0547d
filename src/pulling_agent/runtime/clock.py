"""The agent's watch on its estimate of the server's clock (:mod:`queue.clock`): measured
before the first claim, refreshed on every heartbeat, and a gate on claiming.

A lease is renewed every ``LEASE_SECONDS / 3``, so a renewed lease has at least two thirds of
``LEASE_SECONDS`` left on the holder's clock. Another agent takes it over only once its own
clock reads past the expiry; with each agent's estimate within ``LEASE_SECONDS / 3`` of the
server's, that cannot happen while the holder renews. An agent whose bound is wider (never
measured, or no answer for so long that the drift allowance has grown past it) claims
nothing, says so in one log line, and is not ready, until a sample brings the bound back."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from pymongo.errors import PyMongoError

from pulling_agent.logs import get_logger
from pulling_agent.queue.clock import STARTUP_SAMPLES, ServerClock

SKEW_WARNING = 1.0  # seconds off the server's clock worth a warning (NTP on that node)
MEASURE_TIMEOUT = 10.0


class ClockWatch:
    """A companion of the agent: keeps ``clock`` measured and says when claiming must wait."""

    def __init__(
        self,
        clock: ServerClock,
        agent_id: str,
        lease_seconds: float,
        interval: float,
        on_usable: Callable[[], None],
    ) -> None:
        self.clock = clock
        self.bound = lease_seconds / 3
        self._interval = interval
        self._on_usable = on_usable
        self._log = get_logger(agent_id=agent_id, component="clock")
        self._said: str | None = None  # the reason last logged for refusing to claim
        self._skew_said = False
        self.failures = 0

    def blocked(self) -> str | None:
        """Why claiming must wait, or None when the clock is good enough."""
        if not self.clock.measured:
            return "the server's clock has not been measured yet"
        error = self.clock.error
        if error > self.bound:
            return (
                f"the estimate of the server's clock may be off by {error:.3f} s, more than "
                f"LEASE_SECONDS/3 = {self.bound:g} s"
            )
        return None

    def snapshot(self) -> dict[str, Any]:
        offset = self.clock.offset
        return {
            "clock_offset_seconds": None if offset is None else round(offset, 4),
            "clock_error_seconds": _finite(self.clock.error),
            "clock_blocked": self.blocked(),
        }

    async def start(self) -> None:
        await self._measure(STARTUP_SAMPLES)
        offset = self.clock.offset
        if offset is not None:
            self._log.info(
                "server clock measured",
                action="clock.measured",
                offset_seconds=round(offset, 4),
                error_seconds=_finite(self.clock.error),
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._measure(1)

    async def stop(self) -> None:
        return None

    async def _measure(self, samples: int) -> None:
        try:
            async with asyncio.timeout(MEASURE_TIMEOUT):
                taken = await self.clock.measure(samples)
        except (PyMongoError, TimeoutError) as exc:
            self.failures += 1
            self._log.debug("server clock not sampled", action="clock.error", error=str(exc)[:300])
        else:
            if taken is None:
                self.failures += 1
                self._log.warning(
                    "the server's hello answer carries no localTime; the clock cannot be measured",
                    action="clock.error",
                )
        self._judge()

    def _judge(self) -> None:
        reason = self.blocked()
        if reason is not None and reason != self._said:
            self._said = reason
            self._log.error(
                f"not claiming: {reason}; claims resume once the server answers hello "
                "with its localTime within the bound",
                action="clock.unusable",
            )
        elif reason is None and self._said is not None:
            self._said = None
            self._log.info("server clock usable again; claiming", action="clock.usable")
            self._on_usable()
        offset = self.clock.offset
        skewed = offset is not None and abs(offset) > SKEW_WARNING
        if skewed and not self._skew_said:
            self._log.warning(
                f"this node's clock is {abs(offset or 0):.1f} s "
                f"{'behind' if (offset or 0) > 0 else 'ahead of'} MongoDB's; the agent uses "
                "MongoDB's time, but run NTP (chrony) on this node",
                action="clock.skewed",
                offset_seconds=round(offset or 0, 3),
            )
        self._skew_said = skewed


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None
