"""queue.results: what a document keeps of a handler's return value, for the worst values."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import bson
import pytest

from pulling_agent.queue.results import HIDDEN, MAX_DEPTH, NOTHING, kept

LIMIT = 16 * 1024


@pytest.mark.parametrize(
    "value",
    [
        {"file": "exports/2026-12.csv", "rows": 12},
        "a string",
        0,
        False,
        [1, "two", {"three": 3.0}],
        datetime(2026, 12, 7, tzinfo=UTC),
        b"\x00\xff",
        {"nested": {"deep": ["x"] * 10}},
    ],
)
def test_encodable_values_are_kept_as_they_are(value: Any) -> None:
    result = kept(value, LIMIT)
    assert result.stored and not result.error
    assert (
        bson.decode(bson.encode({"v": result.value}))["v"]
        == bson.decode(bson.encode({"v": value}))["v"]
    )


def test_none_keeps_nothing_and_zero_bytes_turns_results_off() -> None:
    assert kept(None, LIMIT) is NOTHING and NOTHING.fields == {}
    assert kept({"a": 1}, 0) is NOTHING


def test_a_result_over_the_limit_is_an_error_that_names_the_setting() -> None:
    result = kept("x" * LIMIT, LIMIT)
    assert not result.stored and "RESULT_MAX_BYTES=16,384" in result.error
    assert result.fields == {"result_error": result.error}
    assert kept("x" * (LIMIT - 100), LIMIT).stored, "just under the limit: kept"


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class Exploding(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("boom")


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (object(), "is not BSON-encodable"),
        (Hostile(), "could not be read"),
        ({1: "int key"}, "is not BSON-encodable"),
        ({"big": 2**80}, "is not BSON-encodable"),
        ({"set": {1, 2}}, "is not BSON-encodable"),
        (Exploding(a=1), "could not be read"),
        (_nested(MAX_DEPTH + 5), "nests deeper"),
        (_nested(100_000), "nests deeper"),
    ],
)
def test_unencodable_values_become_a_clear_error_never_an_exception(value: Any, says: str) -> None:
    result = kept(value, LIMIT)
    assert not result.stored and says in result.error
    assert len(result.error) < 500


def test_a_self_containing_value_is_refused_not_a_crash() -> None:
    loop: list[Any] = []
    loop.append(loop)
    result = kept(loop, LIMIT)
    assert not result.stored and "nests deeper" in result.error


def test_secrets_are_replaced_everywhere_in_the_value_and_in_its_error() -> None:
    secrets = ["s3cr3t-pass", "tok_abcdefghijklmnop"]
    value = {
        "uri": "mongodb://app:s3cr3t-pass@db/?x=1",
        "s3cr3t-pass": ["Bearer tok_abcdefghijklmnop", ("tok_abcdefghijklmnop",)],
        "n": math.pi,
    }
    result = kept(value, LIMIT, secrets)
    assert result.stored
    text = repr(result.value)
    assert "s3cr3t" not in text and "tok_" not in text and text.count(HIDDEN) == 4
    refused = kept({"x": object(), "why": "s3cr3t-pass"}, LIMIT, secrets)
    assert "s3cr3t" not in refused.error


def test_a_huge_string_is_refused_without_being_encoded() -> None:
    result = kept("x" * 50_000_000, LIMIT)
    assert result.error.startswith("the result is a str of 50,000,000 characters, more than")
