"""Local rate-limit slots (GCRA) and claim sizes under limits."""

from __future__ import annotations

import pytest

from pulling_agent.runtime.rate_limit import Pace, claim_size


def test_slots_follow_each_other_by_the_interval_without_burst() -> None:
    pace = Pace(rate=4.0)
    assert [pace.assign(100.0) for _ in range(3)] == [100.0, 100.25, 100.5]
    assert pace.ahead(100.0) == pytest.approx(0.75)
    # idle for a while: the next slot is now, not a burst of the slots missed meanwhile
    assert pace.assign(200.0) == 200.0
    assert pace.assign(200.0) == 200.25


@pytest.mark.parametrize(
    ("batch", "rates", "size"),
    [(100, [], 100), (100, [5.0], 5), (100, [0.01], 1), (10, [500.0], 10), (100, [50, 3], 3)],
)
def test_claims_hold_about_one_second_of_the_slowest_limit(
    batch: int, rates: list[float], size: int
) -> None:
    assert claim_size(batch, rates) == size
