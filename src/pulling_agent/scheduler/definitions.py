"""Job definitions: the flat, APScheduler-shaped entries of ``JOBS_FILE``, validated.

    - id: nightly-report
      trigger: cron            # interval | cron | date
      hour: 2                  # cron: minute/hour/day/month/day_of_week/second, or expression
      timezone: Europe/Berlin  # default UTC
      func: myapp.jobs:report  # called as func(ctx, **kwargs), sync or async
      kwargs: {format: pdf}
      misfire_grace_time: 30   # seconds; default 30
      coalesce: true           # run once for several missed fires
      max_runtime: 600         # seconds
      retry: false             # re-run a fire whose agent died
      enabled: true
    - id: maintenance-window-start
      trigger: cron
      expression: "0 2 * * *"
      action: pause            # built-in: pause | resume (cluster control)
      reason: nightly maintenance

Trigger arithmetic is APScheduler's (3.x trigger classes): DST and time zones behave as
that library does.
"""

from __future__ import annotations

import hashlib
import json
import zoneinfo
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pulling_agent.errors import ConfigError, HandlerLoadError
from pulling_agent.runtime.handlers import load_handler

INTERVAL_FIELDS = ("weeks", "days", "hours", "minutes", "seconds")
CRON_FIELDS = ("second", "minute", "hour", "day", "month", "day_of_week", "week", "year")


class JobConfigError(ConfigError):
    """An invalid job definition; the message names the job and the field."""


class JobDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    trigger: Literal["interval", "cron", "date"]
    timezone: str = "UTC"
    # interval
    weeks: float = 0
    days: float = 0
    hours: float = 0
    minutes: float = 0
    seconds: float = 0
    start_date: datetime | None = None
    end_date: datetime | None = None
    # cron
    expression: str | None = None
    second: str | int | None = None
    minute: str | int | None = None
    hour: str | int | None = None
    day: str | int | None = None
    month: str | int | None = None
    day_of_week: str | int | None = None
    week: str | int | None = None
    year: str | int | None = None
    # date
    run_date: datetime | None = None
    # what to run
    func: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    action: Literal["pause", "resume"] | None = None
    reason: str = ""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # options
    misfire_grace_time: float = Field(default=30, ge=0)
    coalesce: bool = True
    max_runtime: float | None = Field(default=None, gt=0)
    retry: bool = False
    enabled: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobDefinition:
        if (self.func is None) == (self.action is None):
            raise ValueError("give exactly one of func (module:function) or action (pause|resume)")
        if self.action and self.kwargs:
            raise ValueError("kwargs apply to func, not to an action")
        if self.trigger == "interval" and not any(getattr(self, f) for f in INTERVAL_FIELDS):
            raise ValueError("an interval trigger needs weeks, days, hours, minutes or seconds")
        if self.trigger == "date" and self.run_date is None:
            raise ValueError("a date trigger needs run_date")
        if (
            self.trigger == "cron"
            and self.expression
            and any(getattr(self, f) is not None for f in CRON_FIELDS)
        ):
            raise ValueError("a cron trigger takes expression or the fields, not both")
        if (
            self.trigger == "cron"
            and not self.expression
            and all(getattr(self, f) is None for f in CRON_FIELDS)
        ):
            raise ValueError("a cron trigger needs expression or at least one field")
        build_trigger(self)  # let APScheduler reject what it cannot schedule
        return self

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def digest(self) -> str:
        """A stable hash of the definition, to tell versions apart during a rolling deploy."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_trigger(job: JobDefinition) -> BaseTrigger:
    zone = job.zone
    if job.trigger == "interval":
        return IntervalTrigger(
            **{f: getattr(job, f) for f in INTERVAL_FIELDS},
            start_date=job.start_date,
            end_date=job.end_date,
            timezone=zone,
        )
    if job.trigger == "cron":
        if job.expression:
            return CronTrigger.from_crontab(job.expression, timezone=zone)
        fields = {f: getattr(job, f) for f in CRON_FIELDS if getattr(job, f) is not None}
        return CronTrigger(
            **fields, start_date=job.start_date, end_date=job.end_date, timezone=zone
        )
    return DateTrigger(run_date=job.run_date, timezone=zone)


def _describe(job_id: str, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "definition"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"job {job_id!r}: {where}: {message}"


def parse_jobs(entries: Any, source: str) -> list[JobDefinition]:
    """Validate a list of job entries; raise :class:`JobConfigError` for the first bad one."""
    if not isinstance(entries, list):
        raise JobConfigError(f"{source}: expected a list of jobs (got {type(entries).__name__})")
    jobs: list[JobDefinition] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        job_id = str(entry.get("id", f"#{position}")) if isinstance(entry, dict) else f"#{position}"
        if not isinstance(entry, dict):
            raise JobConfigError(f"{source}: job {job_id}: expected a mapping")
        try:
            job = JobDefinition(**entry)
        except ValidationError as exc:
            raise JobConfigError(f"{source}: {_describe(job_id, exc)}") from None
        except (ValueError, TypeError) as exc:  # raised by APScheduler while building
            raise JobConfigError(f"{source}: job {job_id!r}: {exc}") from None
        if job.id in seen:
            raise JobConfigError(f"{source}: job {job.id!r}: id: declared twice")
        if job.func:
            try:
                load_handler(job.func, what="func")
            except HandlerLoadError as exc:
                raise JobConfigError(f"{source}: job {job.id!r}: {exc}") from None
        seen.add(job.id)
        jobs.append(job)
    return jobs


def load_jobs_file(path: Path) -> list[JobDefinition]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobConfigError(f"JOBS_FILE {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise JobConfigError(
            f"JOBS_FILE {path}: not valid YAML{where}: {problem} (check the indentation "
            "there: each job is a '- id: …' entry under 'jobs:')"
        ) from None
    if isinstance(data, dict) and "jobs" in data:
        data = data["jobs"]
    return parse_jobs(data or [], f"JOBS_FILE {path}")
