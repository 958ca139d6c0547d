"""A model of N agents claiming from one queue, for fleets larger than this machine runs
as processes (64 agents): how many claim round trips per document, and how many
candidates are lost to another agent, with and without each agent reading its own slice of
the head (pulling_agent.queue.spread). Asserts nothing; prints a table.

The model follows the store's protocol, not its timings: an agent reads a window of
``window(limit)`` candidates (a find; the second half is its spare for the next claim,
usable for ``SPARE_MAX_AGE``), then writes a conditional claim on the first ``limit`` one
network round trip later (an update), winning those no other agent claimed in between; if
it lost any, it reads back what it holds (a find) and looks again, up to
``CONTENTION_ROUNDS``. Its workers then take ``limit x work`` seconds of handler time over
``CONCURRENCY`` workers before it claims again (it claims when half its batch is left,
so claiming overlaps processing, as the pipeline does). Every agent starts at a random
moment; the backlog is large enough that no agent runs dry. Times in milliseconds.

    python -m bench.claim_model [--agents 1 4 16 64] [--docs 200000]
"""

from __future__ import annotations

import argparse
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from pulling_agent.queue.mongo import CONTENTION_ROUNDS
from pulling_agent.queue.spread import Share, Spread, window

LIMIT = 100  # BATCH_SIZE
CONCURRENCY = 8
RTT = 0.5  # ms: one round trip (loopback to a busy primary)
WORK = 0.5  # ms of handler time per document
SPARE_MAX_AGE = 1000.0  # ms


@dataclass
class Result:
    docs: int = 0
    finds: int = 0
    updates: int = 0
    lost: int = 0


def simulate(agents: int, docs: int, spread: bool, seed: int = 1) -> Result:
    """A discrete-event run: each claim is a read (from the spare, or a find) and, later, a
    conditional write; other agents' writes may land in between."""
    rng = random.Random(seed)
    taken = [False] * docs
    result = Result()
    spreads = [Spread(_fixed(Share(r, agents)) if spread else None) for r in range(agents)]
    spares: list[tuple[list[int], float]] = [([], 0.0) for _ in range(agents)]
    pending: list[list[int]] = [[] for _ in range(agents)]  # candidates between read and write
    rounds = [0] * agents
    won = [0] * agents
    # (time, agent, what): what is "read" or "write"
    events = [(rng.random() * 10, agent, "read") for agent in range(agents)]
    heapq.heapify(events)
    head = 0
    while events and result.docs < docs * 0.9:
        now, agent, what = heapq.heappop(events)
        if what == "read":
            while head < docs and taken[head]:
                head += 1
            want = LIMIT - won[agent]
            spare, spare_at = spares[agent]
            if spare and now - spare_at < SPARE_MAX_AGE:
                pending[agent], spares[agent] = spare[:want], (spare[want:], spare_at)
                heapq.heappush(events, (now + RTT / 2, agent, "write"))
                continue
            read = window(want)
            skip = spreads[agent].offset(read)
            free = _untaken(taken, head, skip + read)
            found = free[skip : skip + read]
            trips = 1
            if skip and len(found) < want:
                found, trips = free[:read], 2
            result.finds += trips
            pending[agent] = found[:want]
            spares[agent] = (found[want:], now + trips * RTT)
            heapq.heappush(events, (now + trips * RTT + RTT / 2, agent, "write"))
            continue
        result.updates += 1
        candidates = pending[agent]
        mine = [d for d in candidates if not taken[d]]
        for d in mine:
            taken[d] = True
        won[agent] += len(mine)
        lost = len(candidates) - len(mine)
        result.lost += lost
        rounds[agent] += 1
        if lost and rounds[agent] < CONTENTION_ROUNDS and won[agent] < LIMIT:
            result.finds += 1  # the read-back of what it holds
            spares[agent] = ([], 0.0)
            heapq.heappush(events, (now + RTT / 2 + RTT, agent, "read"))
            continue
        if lost:
            result.finds += 1
            spares[agent] = ([], 0.0)
        result.docs += won[agent]
        busy = max(won[agent], 1) * WORK / CONCURRENCY / 2  # claims again at half a batch
        won[agent], rounds[agent] = 0, 0
        heapq.heappush(events, (now + RTT / 2 + busy * (0.9 + 0.2 * rng.random()), agent, "read"))
    return result


def _fixed(share: Share) -> Callable[[], Share]:
    return lambda: share


def _untaken(taken: list[bool], start: int, want: int) -> list[int]:
    out = []
    for d in range(start, len(taken)):
        if not taken[d]:
            out.append(d)
            if len(out) >= want:
                break
    return out


def main(counts: list[int], docs: int) -> None:
    table = Table(title=f"claim model: {docs:,} documents, BATCH_SIZE {LIMIT}, RTT {RTT} ms")
    for column in (
        "agents",
        "round trips/doc, same head",
        "lost/doc",
        "round trips/doc, own slice",
        "lost/doc",
    ):
        table.add_column(column, justify="right")
    for count in counts:
        rows = []
        for spread in (False, True):
            r = simulate(count, docs, spread)
            rows += [f"{(r.finds + r.updates) / r.docs:.4f}", f"{r.lost / r.docs:.3f}"]
        table.add_row(str(count), *rows)
    Console(width=120).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--docs", type=int, default=200_000)
    options = parser.parse_args()
    main(options.agents, options.docs)
