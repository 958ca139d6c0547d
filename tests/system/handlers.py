"""Handlers that system-test agents load by name (``HANDLER=tests.system.handlers:record``)."""

import os
import time
from typing import Any


class PoisonError(Exception):
    pass


def record(doc: dict[str, Any]) -> None:
    """Append ``n pid`` to RECORD_FILE (one write, O_APPEND), sleep HANDLER_SLEEP, fail on
    documents marked ``poison``."""
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{doc['n']} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(float(os.environ.get("HANDLER_SLEEP", "0")))
    if doc.get("poison"):
        raise PoisonError(f"document {doc['n']} is poison")


def uptime() -> str:
    with open("/proc/uptime") as f:
        return f.read().split()[0]


def clocked(doc: dict[str, Any]) -> None:
    """Append ``n pid uptime`` to RECORD_FILE when it starts, then sleep the document's
    ``sleep`` seconds. ``/proc/uptime`` is one clock for every process of the machine that
    libfaketime does not touch (it fakes every clock_gettime clock, even CLOCK_BOOTTIME)."""
    line = f"{doc['n']} {os.getpid()} {uptime()}\n"
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    time.sleep(float(doc.get("sleep", 0)))


def hang(doc: dict[str, Any]) -> None:
    """A sync handler that never finishes in time (its thread cannot be cancelled)."""
    record(doc)
    time.sleep(600)


async def misbehave(doc: dict[str, Any]) -> None:
    """An async handler that raises what the document's ``raise`` field names (SystemExit,
    KeyboardInterrupt, CancelledError, GeneratorExit), else records it like :func:`record`."""
    import asyncio
    import builtins

    name = doc.get("raise")
    if name == "CancelledError":
        raise asyncio.CancelledError
    if isinstance(name, str):
        raise getattr(builtins, name)(f"document {doc['n']} raises {name}")
    record(doc)


def spans(doc: dict[str, Any]) -> None:
    """Append ``s n pid t`` when it starts and ``e n pid t`` when it ends to RECORD_FILE
    (``t``: CLOCK_MONOTONIC, one clock for every process of the machine), sleeping
    HANDLER_SLEEP in between: what ran at once, for the limit tests."""
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"s {doc['n']} {os.getpid()} {time.monotonic()}\n".encode())
        time.sleep(float(os.environ.get("HANDLER_SLEEP", "0")))
        os.write(fd, f"e {doc['n']} {os.getpid()} {time.monotonic()}\n".encode())
    finally:
        os.close(fd)
