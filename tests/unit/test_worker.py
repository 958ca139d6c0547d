"""The Python handler registry (``HANDLERS=module:worker``): registration rules and how an
agent is built from it."""

from __future__ import annotations

from typing import Any

import pytest

from pulling_agent.config import load_settings
from pulling_agent.errors import PullingAgentError
from pulling_agent.runtime.handlers import TypedHandlers, build_handlers
from pulling_agent.worker import Worker
from tests.conftest import invoke

BASE = {"mongodb_uri": "mongodb://h/", "mongodb_database": "d", "mongodb_collection": "c"}


def test_handlers_register_by_type() -> None:
    worker = Worker()

    @worker.handler("email")
    async def email(doc: dict[str, Any]) -> None: ...

    @worker.handler("invoice", concurrency=2)
    def invoice(doc: dict[str, Any]) -> None: ...

    @worker.handler()
    def other(doc: dict[str, Any]) -> None: ...

    assert worker.handlers == {"email": email, "invoice": invoice, None: other}
    assert worker.types == ["email", "invoice"] and worker.concurrency == {"invoice": 2}


@pytest.mark.parametrize(
    ("args", "kwargs", "says"),
    [
        (("",), {}, "non-empty"),
        ((" ",), {}, "non-empty"),
        (("a,b",), {}, "without"),
        (("a=b",), {}, "without"),
        ((5,), {}, "string"),
        (("x" * 201,), {}, "200"),
        (("a",), {"concurrency": 0}, "whole number"),
        (("a",), {"concurrency": True}, "whole number"),
        (("a",), {"concurrency": 1.5}, "whole number"),
        ((), {"concurrency": 2}, "needs a type"),
    ],
)
def test_bad_registrations_are_refused_at_import(
    args: tuple[Any, ...], kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        Worker().handler(*args, **kwargs)


def test_a_type_registered_twice_is_refused() -> None:
    worker = Worker()
    worker.handler("a")(print)
    with pytest.raises(ValueError, match="already"):
        worker.handler("a")


def test_settings_defer_type_names_to_the_registry() -> None:
    settings = load_settings(
        **BASE, handlers="tests.unit.test_worker:sample", type_concurrency="x=1"
    )
    assert settings.handlers_registry == "tests.unit.test_worker:sample"
    assert settings.handler_map == {} and settings.served_types is None


sample = Worker()
sample.handler("email")(print)
sample.handler("invoice", concurrency=3)(print)
not_a_worker = {"email": print}
empty = Worker()


def test_an_agent_built_from_a_registry_claims_its_types() -> None:
    settings = load_settings(
        **BASE, handlers="tests.unit.test_worker:sample", type_concurrency="email=2"
    )
    typed = build_handlers(settings)
    assert isinstance(typed, TypedHandlers)
    assert typed.served_types == ["email", "invoice"]
    assert {k: s._value for k, s in typed._limits.items()} == {"email": 2, "invoice": 3}
    typed.close()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"handlers": "tests.unit.test_worker:not_a_worker"}, "not a pulling_agent.Worker"),
        ({"handlers": "tests.unit.test_worker:empty"}, "no handlers"),
        ({"handlers": "tests.unit.test_worker:nowhere"}, "has no attribute"),
        ({"handlers": "tests.unit.test_worker:sample", "type_rate_limit": "sms=1"}, "'sms'"),
        ({"handlers": "tests.unit.test_worker:sample", "type_concurrency": "sms=1"}, "'sms'"),
    ],
)
def test_a_registry_that_cannot_run_stops_the_agent_with_exit_2(
    extra: dict[str, str], says: str
) -> None:
    with pytest.raises(PullingAgentError) as info:
        build_handlers(load_settings(**BASE, **extra))
    assert says in str(info.value) and "\n" not in str(info.value)
    env: dict[str, str | None] = {
        "MONGODB_URI": BASE["mongodb_uri"],
        "MONGODB_DATABASE": BASE["mongodb_database"],
        "MONGODB_COLLECTION": BASE["mongodb_collection"],
        **{name.upper(): value for name, value in extra.items()},
    }
    result = invoke(env, "run")
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
