"""A schedule defined in Python (JOBS=tests.unit.sample_schedule:jobs)."""

from pulling_agent import JobFactory
from tests.unit.sample_jobs import sync_record

jobs = [
    JobFactory.create_job("nightly", "tests.unit.sample_jobs:record", trigger="cron", hour=2),
    JobFactory.create_job("often", sync_record, trigger="interval", minutes=5),
]
not_a_list = {"nightly": "tests.unit.sample_jobs:record"}
