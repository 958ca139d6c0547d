"""Handlers the unit tests load by name."""

import threading
from typing import Any

seen_threads: list[str] = []


def sync_handler(doc: dict[str, Any]) -> None:
    seen_threads.append(threading.current_thread().name)


async def async_handler(doc: dict[str, Any]) -> None:
    return None


NOT_CALLABLE = 42
