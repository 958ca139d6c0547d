"""An outcome write that failed after the server applied it: the retry changes nothing,
and the store tells which outcomes are already there as this agent wrote them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pulling_agent.queue.model import ClaimKind, Completion, ErrorInfo, OutcomeKind
from tests.deviations import SET_DATETIME_IS_STRING, nx_deviation
from tests.integration.test_store_contract import Harness, h

__all__ = ["h"]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _claimed(h: Harness, n: int) -> tuple[list[object], str]:
    ids = await h.insert([{"status": "pending", "n": i} for i in range(n)])
    claims = await h.store.claim("a", n, 30, now(), (ClaimKind.FRESH,))
    return ids, claims[0].token


async def test_failed_outcomes_written_before_are_recognised(h: Harness) -> None:
    ids, token = await _claimed(h, 2)
    at = now()
    err = ErrorInfo("ValueError", "bad", "", at, 1)
    batch = [
        Completion(ids[0], token, OutcomeKind.RETRY, err, (), available_at=at),
        Completion(ids[1], token, OutcomeKind.FAILED, err),
    ]
    assert await h.store.complete(batch, at) == 2
    assert await h.store.complete(batch, at) == 0, "the retry finds nothing to change"
    assert await h.store.written(batch, at) == 2
    other = ErrorInfo("ValueError", "bad", "", at + timedelta(seconds=5), 1)
    assert await h.store.written([Completion(ids[1], token, OutcomeKind.FAILED, other)], at) == 0


@nx_deviation(SET_DATETIME_IS_STRING)
async def test_processed_outcomes_written_before_are_recognised(h: Harness) -> None:
    ids, token = await _claimed(h, 2)
    at = now()
    batch = [Completion(i, token, OutcomeKind.PROCESSED) for i in ids]
    assert await h.store.complete(batch, at) == 2
    assert await h.store.written(batch, at) == 2
    assert await h.store.written(batch, at + timedelta(seconds=1)) == 0, "another write's"
