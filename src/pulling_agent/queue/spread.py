"""Where each agent of a fleet reads fresh work, so that agents do not all fight over the
head of the queue (MongoDB has no ``SKIP LOCKED``: a claim lost to another agent is a wasted
query plan, index scan and write attempt on the primary).

Every agent that claims the same documents (the same types) knows its **share**: its rank
among the running agents of the fleet, sorted by agent id, and how many they are (from the
registry, refreshed every heartbeat). Agent ``rank`` of ``n`` reads its fresh candidates
from ``rank * window`` documents into the queue's priority order (``window`` = the
documents one find reads), so at any moment the agents read disjoint slices of the head
and their conditional claim writes rarely meet. Agent 0 reads the head itself.

Nothing starves: every ``HEAD_EVERY``-th fresh find of every agent reads the head whatever
its share (a document at the head is read within ``HEAD_EVERY`` finds of any running
agent even if the agent meant to cover it is gone, paused or stale in the registry), and a
slice past the end of the queue falls back to the head at once. A lone agent (or one
without a share) always reads the head: nothing changes for it. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

HEAD_EVERY = 8
WINDOW_BATCHES = 2  # fresh candidates one find reads, in claims: the rest is the spare


@dataclass(frozen=True, slots=True)
class Share:
    rank: int = 0
    of: int = 1


def window(limit: int) -> int:
    """The fresh candidates one find reads for a claim of ``limit``."""
    return limit * WINDOW_BATCHES


class Spread:
    """An agent's reading position in the queue, find after find."""

    def __init__(self, share: Callable[[], Share] | None = None) -> None:
        self._share = share
        self._finds = 0

    def offset(self, read: int) -> int:
        """How many fresh documents (in claim order) the next find skips."""
        self._finds += 1
        if self._share is None or self._finds % HEAD_EVERY == 0:
            return 0
        share = self._share()
        if share.of <= 1 or not 0 < share.rank < share.of:
            return 0
        return share.rank * read
