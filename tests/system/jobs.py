"""Job functions that system-test agents load from their JOBS_FILE."""

import os
import time
from typing import Any


def record(ctx: Any) -> None:
    """Append ``job fire_time pid`` to JOB_LOG with one O_APPEND write."""
    line = f"{ctx.job_id} {ctx.fire_time.isoformat()} {os.getpid()}\n"
    fd = os.open(os.environ["JOB_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def clocked(ctx: Any) -> None:
    """Append ``job fire_time pid uptime`` to JOB_LOG (see handlers.clocked)."""
    from tests.system.handlers import uptime

    line = f"{ctx.job_id} {ctx.fire_time.isoformat()} {os.getpid()} {uptime()}\n"
    fd = os.open(os.environ["JOB_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def slow(ctx: Any) -> None:
    record(ctx)
    time.sleep(120)
