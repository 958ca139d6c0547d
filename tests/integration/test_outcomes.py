"""Explicit outcomes and progress in every store: a handler's Retry (attempt not
consumed), Skip/Cancel (status cancelled), and progress written with the renewal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pulling_agent.queue.model import ClaimKind, Completion, ErrorInfo, OutcomeKind
from tests.deviations import SET_DATETIME_IS_STRING, nx_deviation
from tests.integration.test_store_contract import Harness, h

__all__ = ["h"]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_a_reschedule_gives_the_attempt_back_and_records_no_error(h: Harness) -> None:
    [doc_id] = await h.insert([{"status": "pending", "attempts": 2}])
    [claim] = await h.store.claim("a", 1, 30, now(), (ClaimKind.FRESH,))
    assert claim.attempts == 3
    later = now() + timedelta(minutes=5)
    done = Completion(doc_id, claim.token, OutcomeKind.RESCHEDULE, available_at=later)
    assert await h.store.complete([done], now()) == 1
    doc = await h.get(doc_id)
    assert (doc["status"], doc["attempts"]) == ("pending", 2)
    assert "error" not in doc and "lease" not in doc
    assert await h.store.claim("a", 1, 30, now(), (ClaimKind.FRESH, ClaimKind.DUE_RETRY)) == []
    [again] = await h.store.claim("a", 1, 30, later + timedelta(seconds=1), (ClaimKind.DUE_RETRY,))
    assert again.attempts == 3


async def test_a_recorded_reschedule_keeps_the_error(h: Harness) -> None:
    [doc_id] = await h.insert([{"status": "pending"}])
    [claim] = await h.store.claim("a", 1, 30, now(), (ClaimKind.FRESH,))
    error = ErrorInfo("Retry", "quota", "", now(), 1)
    done = Completion(
        doc_id, claim.token, OutcomeKind.RESCHEDULE, error, (error.as_document(),), now()
    )
    assert await h.store.complete([done], now()) == 1
    doc = await h.get(doc_id)
    assert doc["error"]["type"] == "Retry" and len(doc["errors"]) == 1


async def test_a_cancelled_document_is_final_and_kept(h: Harness) -> None:
    [doc_id, other] = await h.insert([{"status": "pending"}, {"status": "pending"}])
    claims = await h.store.claim("a", 2, 30, now(), (ClaimKind.FRESH,))
    token = claims[0].token
    done = Completion(doc_id, token, OutcomeKind.CANCELLED, reason="duplicate order")
    assert (
        await h.store.complete([done, Completion(other, token, OutcomeKind.PROCESSED)], now()) == 2
    )
    doc = await h.get(doc_id)
    assert (doc["status"], doc["cancel_reason"]) == ("cancelled", "duplicate order")
    assert "lease" not in doc
    assert (await h.store.counts())["cancelled"] == 1
    later = now() + timedelta(days=1)
    assert await h.store.claim("a", 5, 30, later, list(ClaimKind)) == []


@nx_deviation(SET_DATETIME_IS_STRING)
async def test_cancelled_at_is_a_datetime(h: Harness) -> None:
    [doc_id] = await h.insert([{"status": "pending"}])
    [claim] = await h.store.claim("a", 1, 30, now(), (ClaimKind.FRESH,))
    await h.store.complete([Completion(doc_id, claim.token, OutcomeKind.CANCELLED)], now())
    assert isinstance((await h.get(doc_id))["cancelled_at"], datetime)


async def test_progress_travels_with_the_renewal(h: Harness) -> None:
    ids = await h.insert([{"status": "pending", "n": i} for i in range(3)])
    claims = await h.store.claim("a", 3, 30, now(), (ClaimKind.FRESH,))
    token = claims[0].token
    renewed = await h.store.renew("a", token, now() + timedelta(seconds=60), {ids[1]: {"done": 40}})
    assert renewed == 3, "every lease renewed once, with or without progress"
    docs = [await h.get(i) for i in ids]
    assert [d.get("progress") for d in docs] == [None, {"done": 40}, None]
    assert all(d["lease"]["token"] == token for d in docs)


async def test_cancel_from_outside(h: Harness) -> None:
    at = now()
    ids = await h.insert([{"status": "pending", "n": i} for i in range(3)])
    [running] = await h.store.claim("a", 1, 30, at, (ClaimKind.FRESH,))
    done = await h.store.claim("a", 1, 30, at, (ClaimKind.FRESH,))
    await h.store.complete([Completion(done[0].doc_id, done[0].token, OutcomeKind.PROCESSED)], at)
    pending = next(i for i in ids if i not in (running.doc_id, done[0].doc_id))
    result = await h.store.cancel([pending, running.doc_id, done[0].doc_id, "nope"], "ops", at)
    assert (result.cancelled, result.requested) == ([pending], [running.doc_id])
    assert result.not_found == [done[0].doc_id, "nope"]
    assert (await h.get(pending))["status"] == "cancelled"
    assert await h.store.cancel_requested(running.token) == [running.doc_id]
    assert await h.store.cancel_requested("another-token") == []
    finish = Completion(running.doc_id, running.token, OutcomeKind.CANCELLED, reason="r")
    assert await h.store.complete([finish], at) == 1
    doc = await h.get(running.doc_id)
    assert doc["status"] == "cancelled" and "cancel_requested" not in doc
