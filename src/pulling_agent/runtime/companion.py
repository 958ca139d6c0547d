"""What lives beside the agent's own tasks: its companions (cluster follower, registry,
metrics, scheduler, API), how the agent sees a handler runner's stuck threads, and the
companions with work of their own to let finish at shutdown."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class Companion(Protocol):
    """A part that lives as long as the agent (cluster follower, registry, metrics, API)."""

    async def start(self) -> None:
        """Called before the agent's first claim; may apply standing control state."""

    async def run(self) -> None:
        """Supervised like the agent's own tasks; cancelled at shutdown."""

    async def stop(self) -> None:
        """Called at the end of shutdown, after every lease was handed back, in the reverse
        order of start; a companion with a true ``stops_last`` attribute (the API, which
        answers requests about the shutdown itself) after all the others."""


class ThreadWatch(Protocol):
    """The handler runner's count of threads stuck past ``HANDLER_TIMEOUT``."""

    @property
    def abandoned(self) -> int: ...

    @property
    def max_abandoned(self) -> int: ...


@runtime_checkable
class Draining(Protocol):
    """A companion with work of its own to let finish at shutdown (the scheduler)."""

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for running work; called alongside the queue's drain."""
