"""Rate limits: the fleet-wide token bucket in MongoDB (over the wire), simulated in virtual
time for one and four agents, and real agents (in-process) whose handlers start no faster
than the limits allow.

The rate assertions are exact properties of the slots the limiter hands out, not timings:
no two documents of the fleet get slots closer than ``1 / rate``, and in a busy window the
fleet gets ``rate`` slots per second (±10 %). The wall-clock rate real agents achieve is
measured by bench/rate_limit.py (docs/BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pymongo import AsyncMongoClient

from pulling_agent.bootstrap import build_node
from pulling_agent.queue.model import Claim
from pulling_agent.queue.mongo import MongoWorkStore
from pulling_agent.runtime import rate_limit
from pulling_agent.runtime.rate_limit import FleetBucket, claim_size
from tests.conftest import async_wait_until, make_settings
from tests.deviations import DOUBLE_SLACK

Client = AsyncMongoClient[dict[str, Any]]
T0 = 1_900_000_000.0  # virtual time, seconds since the epoch
SPACING_SLACK = DOUBLE_SLACK  # float rounding of sums of 1 / rate (and see deviations.py)
CLOCK_SLACK = 0.002  # asyncio may wake a timer up to its clock resolution early


def min_gap(times: list[float]) -> float:
    return min(b - a for a, b in itertools.pairwise(times))


@pytest.fixture
async def control(client: Client, db_name: str) -> AsyncIterator[Any]:
    yield client[db_name]["agent_control"]
    await client.drop_database(db_name)


async def simulate(
    buckets: list[FleetBucket], rate: float, seconds: float, seed: int
) -> list[float]:
    """Agents with an endless backlog, in virtual time: each reserves a claim's worth of
    slots whenever fewer than one second of its slots are left (as the pipeline does),
    at jittered moments. Returns every slot handed out."""
    rng = random.Random(seed)
    size = claim_size(100, [rate])
    next_at = [T0 + rng.random() * 0.05 for _ in buckets]
    slots: list[float] = []
    while min(next_at) < T0 + seconds:
        agent = min(range(len(buckets)), key=next_at.__getitem__)
        now = next_at[agent]
        start = await buckets[agent].reserve(size, now)
        mine = [start + n / rate for n in range(size)]
        slots += mine
        next_at[agent] = max(now, mine[-1] + 1 / rate - 1.0) + rng.random() * 0.02
    return sorted(slots)


def assert_fleet_rate(slots: list[float], rate: float, window: tuple[float, float]) -> None:
    assert min_gap(slots) >= 1 / rate - SPACING_SLACK, "two documents got overlapping slots"
    lo, hi = T0 + window[0], T0 + window[1]
    achieved = sum(lo <= s < hi for s in slots) / (hi - lo)
    assert rate * 0.9 <= achieved <= rate * 1.1, f"{achieved:.1f}/s for a limit of {rate}/s"


@pytest.mark.parametrize("agents", [1, 4])
async def test_the_fleet_gets_the_rate_whatever_the_number_of_agents(
    control: Any, agents: int
) -> None:
    rate = 20.0
    buckets = [FleetBucket(control, "work", rate) for _ in range(agents)]
    slots = await simulate(buckets, rate, seconds=12, seed=agents)
    assert_fleet_rate(slots, rate, window=(2, 10))
    batches = len(slots) / claim_size(100, [rate])
    trips = sum(b.round_trips for b in buckets)
    # one findAndModify per batch; a second only where an agent's guess (busy or idle) was
    # stale, at most once per agent plus once per change of the fleet's state
    assert trips <= batches + 2 * agents, (trips, batches)


async def test_a_restarted_agent_cannot_reset_the_fleet_bucket(control: Any) -> None:
    rate = 10.0
    before = await simulate([FleetBucket(control, "work", rate)], rate, seconds=5, seed=1)
    # the agent restarts: a new process, nothing kept but what is in MongoDB
    restarted = FleetBucket(control, "work", rate)
    first = await restarted.reserve(5, T0 + 1.0)
    assert first >= before[-1] + 1 / rate - SPACING_SLACK, "slots already given are not reused"


async def test_concurrent_reservations_never_share_a_slot(control: Any) -> None:
    rate = 50.0
    buckets = [FleetBucket(control, "work", rate) for _ in range(8)]
    for round_ in range(5):
        now = T0 + round_ * 0.5  # busy and idle guesses both raced
        starts = await asyncio.gather(*(b.reserve(10, now) for b in buckets))
        slots = sorted(s + n / rate for s in starts for n in range(10))
        assert min_gap(slots) >= 1 / rate - SPACING_SLACK


@pytest.mark.parametrize(
    "hostile",
    [{"tat": "soon"}, {"tat": 1e300}, {"tat": {"$gt": 1}}, {"tat": [1, 2]}, {}, {"tat": None}],
    ids=["string", "far-future", "operator-like", "array", "missing", "null"],
)
async def test_a_bucket_no_agent_wrote_is_reset_not_obeyed(
    control: Any, hostile: dict[str, Any]
) -> None:
    if "tat" in hostile and isinstance(hostile["tat"], dict):
        await control.insert_one({"_id": "rate:work", "tat": {"nested": hostile["tat"]}})
    else:
        await control.insert_one({"_id": "rate:work", **hostile})
    bucket = FleetBucket(control, "work", 10.0)
    start = await bucket.reserve(5, T0)
    assert T0 <= start <= T0 + 0.5, "a malformed bucket must not stall the fleet"
    assert await bucket.reserve(5, T0) == pytest.approx(start + 0.5), "and it works after"
    doc = await control.find_one({"_id": "rate:work"})
    assert doc["tat"] == pytest.approx(start + 1.0)


@pytest.mark.parametrize("ahead", [3_500.0, 200.0])
async def test_a_bucket_just_under_an_hour_ahead_is_not_believed(
    control: Any, ahead: float
) -> None:
    # rate 10/s, claims of 10: 128 claims' worth is 128 s; an hour was accepted before
    await control.insert_one({"_id": "rate:work", "tat": T0 + ahead, "rate": 10.0})
    bucket = FleetBucket(control, "work", 10.0)  # BATCH_SIZE 100 by default
    with structlog.testing.capture_logs() as logs:
        start = await bucket.reserve(10, T0)
    assert T0 <= start <= T0 + 1.0, "no agent holds its documents an hour for a slot"
    assert [e["action"] for e in logs] == ["queue.fleet_rate_reset"]


async def test_a_reservation_far_ahead_is_warned_about_once(control: Any) -> None:
    await control.insert_one({"_id": "rate:work", "tat": T0 + 60.0, "rate": 10.0})
    bucket = FleetBucket(control, "work", 10.0)  # believable: 128 s
    with structlog.testing.capture_logs() as logs:
        first = await bucket.reserve(10, T0)
        await bucket.reserve(10, T0)
    assert first == pytest.approx(T0 + 60.0)
    far = [e for e in logs if e["action"] == "queue.fleet_rate_far"]
    assert len(far) == 1 and far[0]["seconds_ahead"] == pytest.approx(60.0, abs=0.1)


async def test_held_slots_are_reserved_again_when_the_bucket_is_repaired(
    control: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limit, "RECHECK", 0.05, raising=False)
    now = time.time()
    await control.insert_one({"_id": "rate:work", "tat": now + 100.0, "rate": 10.0})
    settings = make_settings(tmp_path, fleet_rate_limit=10.0, batch_size=100)
    fleet = FleetBucket(control, "work", 10.0)
    limiter = rate_limit.RateLimiter(settings, fleet, time.time)
    claims = [Claim(i, "token", 1, {"_id": i}) for i in range(3)]

    async def call(work: Any) -> Any:
        return await work

    await limiter.schedule(claims, call)
    assert claims[0].not_before >= now + 99, "the slots were taken 100 s ahead"
    await control.update_one({"_id": "rate:work"}, {"$set": {"tat": time.time()}})  # repaired
    async with asyncio.timeout(30):  # today: waits the whole 100 s
        await limiter.wait_for_slot(claims[0])
    assert claims[2].not_before < time.time() + 5, "the other held slots moved too"
    assert limiter.throttled.seconds["fleet"] > 0


async def _run_paced(
    client: Client,
    mongo_uri: str,
    db_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    agents: int,
    **limits: Any,
) -> tuple[list[tuple[float, float]], list[Any]]:
    """Run ``agents`` in-process agents on 30 documents. Returns, for each document, the
    slot its claim was given and the wall-clock time its handler started; and the nodes."""
    collection = client[db_name]["work"]
    await collection.insert_many([{"status": "pending", "n": n} for n in range(30)])
    started: dict[Any, float] = {}
    claims: list[Claim] = []
    claim = MongoWorkStore.claim

    async def recording(self: MongoWorkStore, *args: Any, **kwargs: Any) -> list[Claim]:
        got = await claim(self, *args, **kwargs)
        claims.extend(got)  # the pipeline sets not_before on these very objects
        return got

    monkeypatch.setattr(MongoWorkStore, "claim", recording)

    async def handler(doc: dict[str, Any]) -> None:
        started[doc["_id"]] = time.time()

    nodes, tasks = [], []
    for n in range(agents):
        settings = make_settings(
            tmp_path / str(n),
            mongodb_uri=mongo_uri,
            mongodb_database=db_name,
            agent_id=f"agent-{n}",
            api_port=0,
            enable_api=False,
            poll_interval=0.1,
            **limits,
        )
        node = build_node(settings, client, handler)
        nodes.append(node)
        tasks.append(asyncio.create_task(node.agent.run(install_signals=False)))
    try:
        await async_wait_until(lambda: len(started) >= 30, timeout=60, what="30 documents")
    finally:
        for node in nodes:
            node.agent.request_shutdown("test")
        await asyncio.wait(tasks, timeout=30)
    slots = {c.doc_id: c.not_before for c in claims}  # a re-claim would replace the slot
    return sorted((slots[i], t) for i, t in started.items()), nodes


def assert_paced(runs: list[tuple[float, float]], rate: float) -> None:
    """Every handler started at or after its slot, and the slots are ``1 / rate`` apart
    (so no window holds more than ``rate`` starts per second, plus one)."""
    late = [start - slot for slot, start in runs]
    assert min(late) >= -CLOCK_SLACK, "a handler started before its slot"
    assert min_gap([slot for slot, _ in runs]) >= 1 / rate - SPACING_SLACK


async def test_rate_limit_paces_one_agents_handlers(
    client: Client, mongo_uri: str, db_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 40.0
    runs, [node] = await _run_paced(
        client, mongo_uri, db_name, tmp_path, monkeypatch, 1, rate_limit=rate
    )
    assert_paced(runs, rate)
    assert node.agent.snapshot()["throttled_seconds"]["agent"] > 0
    metrics = node.metrics.render().decode()
    assert 'pulling_agent_throttled_seconds_total{limit="agent"}' in metrics


async def test_fleet_rate_limit_paces_the_handlers_of_two_agents(
    client: Client, mongo_uri: str, db_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 40.0
    runs, nodes = await _run_paced(
        client, mongo_uri, db_name, tmp_path, monkeypatch, 2, fleet_rate_limit=rate
    )
    assert_paced(runs, rate)
    assert sum(n.agent.snapshot()["throttled_seconds"]["fleet"] for n in nodes) > 0


async def test_type_rate_limit_paces_only_its_type(
    client: Client, mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    rate = 20.0
    collection = client[db_name]["work"]
    await collection.insert_many(
        [{"status": "pending", "type": kind, "n": n} for n in range(12) for kind in ("a", "b")]
    )
    started: dict[str, list[float]] = {"a": [], "b": []}

    async def handler(doc: dict[str, Any]) -> None:
        started[doc["type"]].append(time.time())

    settings = make_settings(
        tmp_path,
        mongodb_uri=mongo_uri,
        mongodb_database=db_name,
        api_port=0,
        enable_api=False,
        handlers="a=m:f,b=m:f",  # names only: this test passes its own handler
        type_rate_limit=f"a={rate}",
    )
    node = build_node(settings, client, handler)
    task = asyncio.create_task(node.agent.run(install_signals=False))
    try:
        await async_wait_until(lambda: len(started["a"]) == 12, timeout=60, what="type a")
    finally:
        node.agent.request_shutdown("test")
        await asyncio.wait([task], timeout=30)
    a = sorted(started["a"])
    # each slot of type a follows the previous by 1 / rate; the first starts at its slot
    assert a[-1] - a[0] >= 11 / rate - CLOCK_SLACK
    assert len(started["b"]) == 12, "type b is not held back by type a's limit"
    throttled = node.agent.snapshot()["throttled_seconds"]
    assert throttled["type"] > 0 and throttled["agent"] == throttled["fleet"] == 0
