"""Explicit outcomes and progress in every store: a handler's Retry (attempt not
consumed), Skip/Cancel (status cancelled), and progress written with the renewal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import Decimal128

from pulling_agent.queue.model import ClaimKind, Completion, ErrorInfo, OutcomeKind
from pulling_agent.queue.results import kept
from tests.deviations import NO_DOCUMENT_SIZE_LIMIT, SET_DATETIME_IS_STRING, nx_deviation
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


async def test_a_result_is_stored_with_the_outcome_and_nothing_else_changes(h: Harness) -> None:
    ids = await h.insert([{"status": "pending", "n": n} for n in range(3)])
    claims = await h.store.claim("a", 3, 30, now(), (ClaimKind.FRESH,))
    token = claims[0].token
    answer = kept({"file": "export-1.csv", "rows": 12}, 16_384)
    too_big = kept("x" * 20_000, 16_384)
    done = [
        Completion(ids[0], token, OutcomeKind.PROCESSED, result=answer),
        Completion(ids[1], token, OutcomeKind.PROCESSED, result=too_big),
        Completion(ids[2], token, OutcomeKind.PROCESSED),
    ]
    assert await h.store.complete(done, now()) == 3
    first, second, third = [await h.get(i) for i in ids]
    assert [d["status"] for d in (first, second, third)] == ["processed"] * 3
    assert first["result"] == {"file": "export-1.csv", "rows": 12}
    assert "result" not in second and "RESULT_MAX_BYTES" in second["result_error"]
    assert "result" not in third and "result_error" not in third


@nx_deviation(NO_DOCUMENT_SIZE_LIMIT)
async def test_a_result_the_server_refuses_leaves_the_document_processed(h: Harness) -> None:
    """Encodable but too big for the document it joins (16 MiB with its payload): the
    outcome is written again with a result_error, never dead-lettered."""
    [doc_id] = await h.insert([{"status": "pending", "blob": "p" * (9 * 1024 * 1024)}])
    [claim] = await h.store.claim("a", 1, 30, now(), (ClaimKind.FRESH,))
    huge = kept("r" * (8 * 1024 * 1024 - 64), 8 * 1024 * 1024)
    assert huge.stored
    done = Completion(doc_id, claim.token, OutcomeKind.PROCESSED, result=huge)
    assert await h.store.complete([done], now()) == 1
    doc = await h.get(doc_id)
    if h.kind == "memory":  # no size limit in memory: the contract is only "processed"
        assert doc["status"] == "processed"
        return
    assert doc["status"] == "processed" and "result" not in doc
    assert doc["result_error"].startswith("MongoDB refused to store the result")


async def test_a_result_only_some_servers_store_never_fails_its_document(h: Harness) -> None:
    """A Decimal128: MongoDB stores it, nx-27017 refuses it (NX-27017.md: "not JSON
    serializable", also in an update). Either way the document is processed: the result
    is there, or result_error says that the server refused it (the store's per-document
    fallback, taken on nx-27017)."""
    [doc_id] = await h.insert([{"status": "pending"}])
    [claim] = await h.store.claim("a", 1, 30, now(), (ClaimKind.FRESH,))
    odd = kept({"amount": Decimal128("12.50")}, 16_384)
    done = Completion(doc_id, claim.token, OutcomeKind.PROCESSED, result=odd)
    assert await h.store.complete([done], now()) == 1
    doc = await h.get(doc_id)
    assert doc["status"] == "processed"
    if "result" in doc:
        assert doc["result"] == {"amount": Decimal128("12.50")}
    else:
        assert doc["result_error"].startswith("MongoDB refused to store the result")


async def test_a_batchs_members_are_read_a_page_at_a_time_with_their_outcomes(
    h: Harness,
) -> None:
    docs = [
        {"status": "processed", "batch_id": "b1", "result": {"n": n}, "payload": "x" * 100}
        for n in range(5)
    ]
    docs += [{"status": "failed", "batch_id": "b1", "error": {"type": "E"}}]
    docs += [{"status": "processed", "batch_id": "b2", "result": {"n": 99}}]
    await h.insert(docs)
    seen = [m async for m in h.store.batch_members("b1", 2)]
    assert sorted(m.get("result", {}).get("n", -1) for m in seen) == [-1, 0, 1, 2, 3, 4]
    assert all("payload" not in m and "batch_id" not in m for m in seen), "outcomes only"
    assert [m async for m in h.store.batch_members("none", 2)] == []
