"""Jobs defined in Python (Cronzimus's job factory), the same definitions ``JOBS_FILE`` builds.

    # myapp/schedule.py
    from pulling_agent import JobFactory

    jobs = [
        JobFactory.create_job("nightly-report", "myapp.jobs:report", trigger="cron", hour=2),
        JobFactory.create_job("heartbeat", myapp.jobs.ping, trigger="interval", minutes=5),
        JobFactory.create_job("launch", "myapp.jobs:launch", trigger="date",
                              run_date="2027-01-01T09:00:00+00:00"),
    ]

Run them with ``JOBS=myapp.schedule:jobs`` (with or instead of ``JOBS_FILE``): the list is
validated exactly as the file's entries are (the same errors, exit 2), and a job id given
twice across both is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pulling_agent.runtime.handlers import load_object
from pulling_agent.scheduler.definitions import JobConfigError, JobDefinition, parse_jobs


class JobFactory:
    @staticmethod
    def create_job(
        id: str,
        func: str | Callable[..., Any],
        trigger: Literal["interval", "cron", "date"] = "interval",
        **options: Any,
    ) -> JobDefinition:
        """One job: ``func`` as ``module:function`` (or the function itself, which must be
        importable by that name), a trigger and its fields as in ``JOBS_FILE`` (``hours=``,
        ``expression=``, ``run_date=``, ``kwargs=``, ``timezone=``, ``max_runtime=``, …).
        Raises :class:`JobConfigError` naming the job and the field."""
        entry = {"id": id, "trigger": trigger, "func": _spec(func, id), **options}
        [job] = parse_jobs([entry], "JobFactory")
        return job


def _spec(func: str | Callable[..., Any], job_id: str) -> str:
    if isinstance(func, str):
        return func
    module, name = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or not name or "<" in name:
        raise JobConfigError(
            f"JobFactory: job {job_id!r}: func must be 'module:function' or a module-level "
            "function (agents import it by name)"
        )
    return f"{module}:{name}"


def load_jobs_object(spec: str) -> list[JobDefinition]:
    """``JOBS=module:attribute``: a list of jobs (:meth:`JobFactory.create_job` results, or
    mappings shaped like ``JOBS_FILE`` entries), validated as the file's are."""
    source = f"JOBS={spec}"
    try:
        found = load_object(spec, "JOBS")
    except JobConfigError:
        raise
    except Exception as exc:  # HandlerLoadError: cannot import, no such attribute
        raise JobConfigError(str(exc)) from None
    if not isinstance(found, list | tuple):
        raise JobConfigError(f"{source}: expected a list of jobs (got {type(found).__name__})")
    entries = [
        job.model_dump(exclude_defaults=True) | {"id": job.id, "trigger": job.trigger}
        if isinstance(job, JobDefinition)
        else job
        for job in found
    ]
    return parse_jobs(entries, source)
