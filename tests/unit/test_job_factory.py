"""Jobs defined in Python (Cronzimus's JobFactory): the same definitions JOBS_FILE builds,
the same validation and errors, loaded with JOBS=module:attribute."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulling_agent import JobFactory
from pulling_agent.scheduler.definitions import JobConfigError, parse_jobs
from pulling_agent.scheduler.factory import load_jobs_object
from tests.conftest import invoke
from tests.unit.sample_jobs import record


@pytest.mark.parametrize(
    ("trigger", "options"),
    [
        ("interval", {"minutes": 5, "kwargs": {"tag": "x"}}),
        ("cron", {"expression": "0 2 * * *", "timezone": "Europe/Berlin"}),
        ("date", {"run_date": "2027-01-01T09:00:00+00:00"}),
    ],
)
def test_a_factory_job_is_the_definition_the_file_builds(
    trigger: str, options: dict[str, object]
) -> None:
    made = JobFactory.create_job("j", "tests.unit.sample_jobs:record", trigger=trigger, **options)  # type: ignore[arg-type]
    [from_file] = parse_jobs(
        [{"id": "j", "trigger": trigger, "func": "tests.unit.sample_jobs:record", **options}],
        "JOBS_FILE",
    )
    assert made == from_file


def test_a_function_is_named_by_its_module_and_name() -> None:
    assert JobFactory.create_job("r", record, minutes=1).func == "tests.unit.sample_jobs:record"
    with pytest.raises(JobConfigError, match="module-level function"):
        JobFactory.create_job("l", lambda ctx: None, minutes=1)


@pytest.mark.parametrize(
    ("func", "options", "says"),
    [
        ("tests.unit.sample_jobs:record", {"trigger": "weekly"}, "job 'bad': trigger"),
        ("no_such_module_here:f", {"minutes": 1}, "cannot import"),
        ("tests.unit.sample_jobs:record", {"minutes": 1, "colour": "red"}, "colour"),
    ],
)
def test_a_bad_factory_job_says_which_and_why(
    func: str, options: dict[str, object], says: str
) -> None:
    with pytest.raises(JobConfigError, match=says):
        JobFactory.create_job("bad", func, **options)  # type: ignore[arg-type]


def test_jobs_load_from_a_module_attribute() -> None:
    jobs = load_jobs_object("tests.unit.sample_schedule:jobs")
    assert [(j.id, j.trigger, j.func) for j in jobs] == [
        ("nightly", "cron", "tests.unit.sample_jobs:record"),
        ("often", "interval", "tests.unit.sample_jobs:sync_record"),
    ]


ENV: dict[str, str | None] = {
    "MONGODB_URI": "mongodb://127.0.0.1:1/",
    "MONGODB_DATABASE": "d",
    "MONGODB_COLLECTION": "c",
    "HANDLER": "json:dumps",
    "HANDLERS": None,
}


@pytest.mark.parametrize(
    ("jobs", "says"),
    [
        ("tests.unit.sample_schedule:not_a_list", "expected a list of jobs"),
        ("tests.unit.sample_schedule:nowhere", "has no attribute"),
        ("tests.unit.sample_schedule:jobs", "declared in JOBS_FILE too"),
    ],
)
def test_bad_jobs_stop_the_agent_with_one_line_and_exit_2(
    tmp_path: Path, jobs: str, says: str
) -> None:
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(
        "jobs:\n  - id: nightly\n    trigger: cron\n    hour: 3\n"
        "    func: tests.unit.sample_jobs:record\n"
    )
    result = invoke({**ENV, "JOBS": jobs, "JOBS_FILE": str(jobs_file)}, "run")
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
