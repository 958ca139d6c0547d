import asyncio
import threading

import pytest

from pulling_agent.errors import HandlerLoadError
from pulling_agent.runtime.handlers import HandlerRunner, load_handler
from tests.unit import sample_handlers


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "module:function"),
        (":f", "module:function"),
        ("tests.unit.nope:f", "cannot import"),
        ("tests.unit.sample_handlers:missing", "no attribute"),
        ("tests.unit.sample_handlers:NOT_CALLABLE", "not callable"),
    ],
)
def test_bad_handler_specs_explain_themselves(spec: str, message: str) -> None:
    with pytest.raises(HandlerLoadError, match=message):
        load_handler(spec)


async def test_sync_handlers_run_in_the_thread_pool() -> None:
    runner = HandlerRunner(load_handler("tests.unit.sample_handlers:sync_handler"), 2, None)
    try:
        await runner({"_id": 1})
    finally:
        runner.close()
    assert sample_handlers.seen_threads[-1].startswith("handler")
    assert sample_handlers.seen_threads[-1] != threading.current_thread().name


async def test_timeout_applies_to_async_handlers() -> None:
    async def slow(doc: dict[str, object]) -> None:
        await asyncio.sleep(30)

    runner = HandlerRunner(slow, 1, timeout=0.01)
    with pytest.raises(TimeoutError):
        await runner({})


async def test_handler_exceptions_propagate() -> None:
    def boom(doc: dict[str, object]) -> None:
        raise ValueError("bad document")

    runner = HandlerRunner(boom, 1, None)
    try:
        with pytest.raises(ValueError, match="bad document"):
            await runner({})
    finally:
        runner.close()
