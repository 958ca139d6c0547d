"""The estimate of MongoDB's clock (queue.clock) and the agent's gate on it (runtime.clock):
bounded by the round trip, moving with the monotonic clock only, never back into a lease."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pulling_agent.fleet.registry import offset_text, skewed
from pulling_agent.queue.clock import DRIFT, RESOLUTION, Sample, ServerClock, sample_of
from pulling_agent.runtime.clock import ClockWatch

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


class Ticks:
    """A monotonic and a wall clock the test moves by hand."""

    def __init__(self, wall_offset: float = 0.0) -> None:
        self.mono = 1000.0
        self.wall_offset = wall_offset  # this node's wall clock minus the true time, s

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return T0.timestamp() + (self.mono - 1000.0) + self.wall_offset


class Server:
    """Answers hello with its clock, ``rtt`` s after it was asked (split evenly), or as told."""

    def __init__(self, ticks: Ticks, rtt: float = 0.002, offset: float = 0.0) -> None:
        self.ticks = ticks
        self.rtt = rtt
        self.offset = offset  # the server's clock minus the true time
        self.asked = 0
        self.answer: dict[str, Any] | None = None

    async def hello(self) -> Mapping[str, Any]:
        self.asked += 1
        self.ticks.mono += self.rtt / 2
        true_now = T0 + timedelta(seconds=self.ticks.mono - 1000.0 + self.offset)
        self.ticks.mono += self.rtt / 2
        if self.answer is not None:
            return self.answer
        # a BSON date: truncated to the millisecond
        truncated = true_now.replace(microsecond=true_now.microsecond // 1000 * 1000)
        return {"ok": 1, "localTime": truncated}

    def true_time(self) -> datetime:
        return T0 + timedelta(seconds=self.ticks.mono - 1000.0 + self.offset)


def clock_with(ticks: Ticks, server: Server) -> ServerClock:
    return ServerClock(server.hello, monotonic=ticks.monotonic, wall=ticks.wall)


# ------------------------------------------------------------------------ the estimate


def test_a_sample_is_the_midpoint_within_half_the_round_trip() -> None:
    sample = sample_of(T0, 10.0, 10.4, 0.0)
    assert sample is not None
    assert sample.at == pytest.approx(10.2)
    assert sample.error == pytest.approx(0.2 + RESOLUTION / 2)
    assert sample.server == T0 + timedelta(seconds=RESOLUTION / 2)


@pytest.mark.parametrize(
    "value", [None, "2026-12-06T12:00:00Z", 1765000000, float("nan"), {"$date": 1}, [], True]
)
def test_a_hello_without_a_date_gives_no_sample(value: Any) -> None:
    assert sample_of(value, 1.0, 2.0, 0.0) is None


def test_a_window_that_runs_backwards_gives_no_sample() -> None:
    assert sample_of(T0, 2.0, 1.0, 0.0) is None


def test_a_naive_local_time_is_read_as_utc() -> None:
    sample = sample_of(T0.replace(tzinfo=None), 1.0, 1.0, 0.0)
    assert sample is not None and sample.server.tzinfo is not None


@pytest.mark.parametrize("skew", [-600.0, -300.0, -30.0, -2.0, 0.0, 2.0, 30.0, 300.0, 600.0])
@pytest.mark.parametrize("rtt", [0.0005, 0.01, 0.4])
async def test_the_estimate_is_within_its_bound_whatever_this_node_reads(
    skew: float, rtt: float
) -> None:
    ticks = Ticks(wall_offset=skew)
    server = Server(ticks, rtt=rtt)
    clock = clock_with(ticks, server)
    await clock.measure(1)
    for step in (0.0, 0.5, 7.0, 45.0):
        ticks.mono += step
        off = abs((clock.now() - server.true_time()).total_seconds())
        assert off <= clock.error
    assert clock.error <= rtt / 2 + RESOLUTION + DRIFT * 60
    assert clock.offset == pytest.approx(-skew, abs=rtt / 2 + RESOLUTION)


async def test_before_the_first_sample_the_error_is_unbounded() -> None:
    ticks = Ticks(wall_offset=90.0)
    clock = clock_with(ticks, Server(ticks))
    assert not clock.measured
    assert clock.error == math.inf
    assert clock.offset is None
    assert clock.now() == datetime.fromtimestamp(ticks.wall(), UTC)


async def test_the_bound_grows_with_age_by_the_drift_allowance() -> None:
    ticks = Ticks()
    clock = clock_with(ticks, Server(ticks))
    await clock.measure(1)
    first = clock.error
    ticks.mono += 100.0
    assert clock.error == pytest.approx(first + DRIFT * 100.0)


async def test_a_step_of_this_nodes_wall_clock_changes_nothing() -> None:
    ticks = Ticks()
    server = Server(ticks)
    clock = clock_with(ticks, server)
    await clock.measure(1)
    before = clock.now()
    ticks.wall_offset = -3600.0  # date -s, a VM resumed, faketime
    ticks.mono += 1.0
    assert (clock.now() - before).total_seconds() == pytest.approx(1.0)
    assert abs((clock.now() - server.true_time()).total_seconds()) <= clock.error


async def test_the_tightest_sample_is_kept() -> None:
    ticks = Ticks()
    server = Server(ticks, rtt=0.2)
    clock = clock_with(ticks, server)
    await clock.measure(1)
    loose = clock.error
    server.rtt = 0.002
    await clock.measure(1)
    tight = clock.error
    assert tight < loose / 10
    server.rtt = 0.5
    await clock.measure(1)  # worse: not kept
    assert clock.error == pytest.approx(tight, abs=DRIFT * 1)


async def test_now_never_goes_back_when_a_better_sample_reads_earlier() -> None:
    ticks = Ticks()
    clock = ServerClock(monotonic=ticks.monotonic, wall=ticks.wall)
    # a loose sample reading 40 ms late, then a tight one reading true time
    clock.record(Sample(T0 + timedelta(seconds=0.04), ticks.mono, 0.05, ticks.wall()))
    first = clock.now()
    ticks.mono += 0.001
    clock.record(Sample(T0 + timedelta(seconds=0.001), ticks.mono, 0.001, ticks.wall()))
    readings = [clock.now()]
    for _ in range(60):
        ticks.mono += 0.001
        readings.append(clock.now())
    assert readings[0] >= first
    assert readings == sorted(readings)  # held, never back
    assert readings[-1] > first  # and moving again once caught up
    assert clock.stepped == 0


async def test_a_sample_beyond_both_bounds_is_followed_as_a_step() -> None:
    ticks = Ticks()
    clock = ServerClock(monotonic=ticks.monotonic, wall=ticks.wall)
    clock.record(Sample(T0, ticks.mono, 0.001, ticks.wall()))
    ticks.mono += 1.0
    stepped = T0 + timedelta(seconds=1.0 - 5.0)  # the server's clock was set back 5 s
    assert clock.record(Sample(stepped, ticks.mono, 0.01, ticks.wall()))
    assert clock.stepped == 1
    assert clock.now() == stepped


async def test_measure_without_a_server_says_so() -> None:
    with pytest.raises(RuntimeError):
        await ServerClock().measure()


async def test_ensure_asks_only_when_the_sample_is_stale() -> None:
    ticks = Ticks()
    server = Server(ticks)
    clock = clock_with(ticks, server)
    await clock.ensure(60)
    await clock.ensure(60)
    assert server.asked == 2  # the first hello of a client may include its connection's set-up
    ticks.mono += 61
    await clock.ensure(60)
    assert server.asked == 3


# ------------------------------------------------------------------------ the gate


def watch_of(clock: ServerClock, lease: float = 30.0) -> tuple[ClockWatch, list[int]]:
    kicked: list[int] = []
    return ClockWatch(clock, "a1", lease, 5.0, lambda: kicked.append(1)), kicked


async def test_claiming_waits_until_the_clock_is_measured() -> None:
    ticks = Ticks()
    server = Server(ticks)
    watch, kicked = watch_of(clock_with(ticks, server))
    assert watch.blocked() is not None
    watch._judge()
    await watch.start()
    assert watch.blocked() is None
    assert kicked == [1]  # the pipeline is woken when claims may start
    assert server.asked == 5


async def test_a_bound_wider_than_a_third_of_the_lease_blocks_claims() -> None:
    ticks = Ticks()
    server = Server(ticks, rtt=2.2)  # error 1.1 s: more than 3/3 s
    watch, _ = watch_of(clock_with(ticks, server), lease=3.0)
    await watch.start()
    reason = watch.blocked()
    assert reason is not None and "LEASE_SECONDS/3" in reason
    server.rtt = 0.002
    await watch._measure(1)
    assert watch.blocked() is None


async def test_an_unanswered_clock_blocks_claims_once_its_bound_has_grown() -> None:
    ticks = Ticks()
    server = Server(ticks)
    watch, _ = watch_of(clock_with(ticks, server), lease=3.0)
    await watch.start()
    assert watch.blocked() is None
    ticks.mono += 1.0 / DRIFT  # no answer for so long that drift could pass a second
    assert watch.blocked() is not None
    assert watch.snapshot()["clock_blocked"] is not None


async def test_a_hello_without_local_time_is_counted_and_claims_wait() -> None:
    ticks = Ticks()
    server = Server(ticks)
    server.answer = {"ok": 1, "localTime": "soon"}
    watch, _ = watch_of(clock_with(ticks, server))
    await watch.start()
    assert watch.failures == 1
    assert watch.blocked() is not None
    assert watch.snapshot() == {
        "clock_offset_seconds": None,
        "clock_error_seconds": None,
        "clock_blocked": watch.blocked(),
    }


async def test_the_snapshot_reports_the_offset_of_this_node() -> None:
    ticks = Ticks(wall_offset=30.0)  # this node is 30 s ahead
    watch, _ = watch_of(clock_with(ticks, Server(ticks)))
    await watch.start()
    snap = watch.snapshot()
    assert snap["clock_offset_seconds"] == pytest.approx(-30.0, abs=0.01)
    assert snap["clock_blocked"] is None
    assert skewed([{"_id": "a1", **snap}]) == {"a1": pytest.approx(30.0, abs=0.01)}


@pytest.mark.parametrize(
    "offset", [None, "30", True, float("nan"), float("inf"), [30], {"$gt": 1}, 0.5, -0.99]
)
def test_skewed_ignores_what_is_not_a_real_offset_beyond_a_second(offset: Any) -> None:
    assert skewed([{"_id": "x", "clock_offset_seconds": offset}]) == {}


def test_skewed_lists_nodes_behind_as_negative() -> None:
    assert skewed([{"_id": "b", "clock_offset_seconds": 300}]) == {"b": -300.0}


@pytest.mark.parametrize(
    ("offset", "shown"),
    [
        (-30.0, "+30.000s !"),
        (300, "-300.000s !"),
        (0.0004, "-0.000s"),
        (-0.999, "+0.999s"),
        (None, "-"),
        ("30", "-"),
        (True, "-"),
        (float("nan"), "-"),
        (float("-inf"), "-"),
        ({"$gt": 1}, "-"),
        ("\x1b[31mred", "-"),
    ],
)
def test_the_offset_is_shown_node_ahead_positive_and_marked_past_a_second(
    offset: Any, shown: str
) -> None:
    assert offset_text(offset) == shown


def test_metrics_carry_the_clock_offset_and_bound() -> None:
    from pulling_agent.runtime.metrics import _clock_metrics

    names = {m.name: m for m in _clock_metrics({"clock_offset_seconds": -2.5})}
    assert names["pulling_agent_clock_offset_seconds"].samples[0].value == -2.5
    assert "pulling_agent_clock_error_seconds" in names
