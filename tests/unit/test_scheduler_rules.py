"""Job definitions and trigger arithmetic (APScheduler's), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pulling_agent.scheduler.definitions import (
    JobConfigError,
    JobDefinition,
    build_trigger,
    load_jobs_file,
    parse_jobs,
)
from pulling_agent.scheduler.timing import anchored, fire_after, first_fire, plan

FUNC = "tests.unit.sample_jobs:record"


def job(**fields: object) -> JobDefinition:
    return parse_jobs([{"id": "j", "func": FUNC, **fields}], "test")[0]


def test_a_jobs_file_in_cronzimus_shape(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        """
jobs:
  - id: every-ten-minutes
    trigger: interval
    minutes: 10
    func: tests.unit.sample_jobs:record
    kwargs: {tag: ten}
  - id: nightly
    trigger: cron
    hour: 2
    minute: 30
    timezone: Europe/Berlin
    func: tests.unit.sample_jobs:sync_record
  - id: window-start
    trigger: cron
    expression: "0 2 * * 1-5"
    action: pause
    reason: nightly maintenance
  - id: once
    trigger: date
    run_date: 2030-01-01T00:00:00Z
    func: tests.unit.sample_jobs:record
    misfire_grace_time: 300
"""
    )
    jobs = load_jobs_file(path)
    assert [j.id for j in jobs] == ["every-ten-minutes", "nightly", "window-start", "once"]
    assert jobs[0].kwargs == {"tag": "ten"}
    assert jobs[0].misfire_grace_time == 30, "APScheduler-like default"
    assert jobs[2].action == "pause"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"trigger": "interval"}, r"job 'j': .*needs weeks, days, hours, minutes or seconds"),
        ({"trigger": "hourly", "seconds": 1}, r"job 'j': trigger: "),
        ({"trigger": "cron", "expression": "61 * * * *"}, r"job 'j': .*"),
        ({"trigger": "cron", "hour": 2, "timezone": "Mars/Olympus"}, r"job 'j': timezone: "),
        ({"trigger": "date"}, r"job 'j': .*needs run_date"),
        ({"trigger": "interval", "seconds": 5, "minuets": 3}, r"job 'j': minuets: "),
        (
            {"trigger": "interval", "seconds": 5, "misfire_grace_time": -1},
            r"job 'j': misfire_grace_time: ",
        ),
    ],
)
def test_invalid_definitions_name_the_job_and_the_field(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(JobConfigError, match=message):
        parse_jobs([{"id": "j", "func": FUNC, **entry}], "JOBS_FILE x")


def test_func_xor_action_importable_and_unique_ids() -> None:
    with pytest.raises(JobConfigError, match="exactly one of func"):
        parse_jobs([{"id": "j", "trigger": "interval", "seconds": 1}], "x")
    with pytest.raises(JobConfigError, match=r"job 'j': func 'no.such:f': cannot import") as bad:
        parse_jobs([{"id": "j", "trigger": "interval", "seconds": 1, "func": "no.such:f"}], "x")
    assert "HANDLER" not in str(bad.value), "a job's func is not the HANDLER setting"
    twice = {"id": "j", "trigger": "interval", "seconds": 1, "func": FUNC}
    with pytest.raises(JobConfigError, match="declared twice"):
        parse_jobs([twice, twice], "x")


def test_interval_fire_times_do_not_depend_on_when_an_agent_started() -> None:
    definition = job(trigger="interval", minutes=10)
    starts = [datetime(2026, 6, 1, 12, m, 37, tzinfo=UTC) for m in (1, 4, 9)]
    fires = {first_fire(anchored(build_trigger(definition), False), s) for s in starts}
    assert fires == {datetime(2026, 6, 1, 12, 10, tzinfo=UTC)}


def test_late_fires_are_missed_or_coalesced() -> None:
    trigger = anchored(build_trigger(job(trigger="interval", seconds=10)), False)
    due = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    now = due + timedelta(seconds=35)
    each = plan(trigger, due, now, grace=30, coalesce=False)
    assert (each.fire_time, each.run, each.skipped) == (due, False, 0)
    assert each.next_fire_time == due + timedelta(seconds=10)
    merged = plan(trigger, due, now, grace=30, coalesce=True)
    assert (merged.fire_time, merged.run, merged.skipped) == (due + timedelta(seconds=30), True, 3)
    assert merged.next_fire_time == due + timedelta(seconds=40)


def test_a_past_date_is_a_fire_to_run_within_grace_then_nothing() -> None:
    run_date = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    trigger = build_trigger(job(trigger="date", run_date=run_date.isoformat()))
    assert first_fire(trigger, run_date + timedelta(seconds=10)) == run_date
    fire = plan(trigger, run_date, run_date + timedelta(seconds=10), 30, True)
    assert fire.run
    assert fire.next_fire_time is None


def test_dst_follows_apscheduler() -> None:
    """Berlin springs forward on 2026-03-29 02:00 and falls back on 2026-10-25 03:00."""
    berlin = ZoneInfo("Europe/Berlin")
    trigger = build_trigger(job(trigger="cron", expression="30 2 * * *", timezone="Europe/Berlin"))
    spring = first_fire(trigger, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert spring is not None
    # 02:30 does not exist that night: APScheduler 3 fires at the wall-clock time anyway,
    # which is 01:30 UTC (an hour before 02:30 CEST would be)
    assert spring.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    after = fire_after(trigger, spring)
    assert after is not None
    assert after.astimezone(berlin).replace(tzinfo=None) == datetime(2026, 3, 30, 2, 30)
    autumn = first_fire(trigger, datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert autumn is not None
    # 02:30 happens twice that night: APScheduler 3 fires at both, an hour apart
    nxt = fire_after(trigger, autumn)
    assert nxt is not None
    assert autumn.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert nxt.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
