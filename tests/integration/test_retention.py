"""Retention (queue.retention) over the wire: TTL indexes partial on status, made, changed
and left alone as RETAIN_* says; and the settings' refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pulling_agent.errors import ConfigError
from pulling_agent.queue import retention
from pulling_agent.queue.mongo import MongoWorkStore
from tests.conftest import make_settings
from tests.deviations import COLLMOD_IGNORED, PARTIAL_INDEX_IS_FULL, nx_deviation

WEEK, DAY = 7 * 86_400.0, 86_400.0
KEEP = {"processed": None, "failed": None, "cancelled": None}


@pytest.fixture
async def store(mongo_uri: str, db_name: str) -> AsyncIterator[MongoWorkStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    collection = client[db_name]["work"]
    await collection.insert_one({"status": "pending"})
    yield MongoWorkStore(collection)
    await client.drop_database(db_name)
    await client.close()


async def ttl(store: MongoWorkStore, field: str) -> Any:
    indexes = await (await store.collection.list_indexes()).to_list()
    return retention.ttl_index(indexes, field)


async def test_unset_retention_keeps_everything_and_makes_no_index(store: MongoWorkStore) -> None:
    assert await store.ensure_retention(KEEP) == []
    assert await retention.current(store.collection) == KEEP


async def test_a_retention_is_a_ttl_index_on_the_end_time(store: MongoWorkStore) -> None:
    notes = await store.ensure_retention({**KEEP, "processed": WEEK, "failed": 30 * DAY})
    assert notes == [
        (
            "info",
            "RETAIN_PROCESSED=7d: processed documents are deleted 7d after processed_at "
            "(index pulling_agent_retain_processed made)",
        ),
        (
            "info",
            "RETAIN_FAILED=30d: failed documents are deleted 30d after failed_at "
            "(index pulling_agent_retain_failed made)",
        ),
    ]
    assert await retention.current(store.collection) == {
        **KEEP,
        "processed": WEEK,
        "failed": 30 * DAY,
    }
    assert (await ttl(store, "processed_at"))["expireAfterSeconds"] == WEEK
    assert await store.ensure_retention({**KEEP, "processed": WEEK, "failed": 30 * DAY}) == [
        ("info", "RETAIN_PROCESSED=7d: processed documents are deleted 7d after processed_at"),
        ("info", "RETAIN_FAILED=30d: failed documents are deleted 30d after failed_at"),
    ], "the same value again changes nothing"


@nx_deviation(PARTIAL_INDEX_IS_FULL)
async def test_a_retention_index_holds_only_documents_of_its_status(store: MongoWorkStore) -> None:
    await store.ensure_retention({**KEEP, "cancelled": DAY})
    index = await ttl(store, "cancelled_at")
    assert index["partialFilterExpression"] == {"status": "cancelled"}


async def test_a_changed_retention_says_both_values(store: MongoWorkStore) -> None:
    await store.ensure_retention({**KEEP, "processed": WEEK})
    notes = await store.ensure_retention({**KEEP, "processed": 3 * DAY})
    assert notes == [
        (
            "warning",
            "RETAIN_PROCESSED=3d here, but the collection's index said 7d (another "
            "agent's value, or set by hand): changed to 3d",
        ),
    ]


@nx_deviation(COLLMOD_IGNORED)
async def test_a_changed_retention_changes_the_index_in_place(store: MongoWorkStore) -> None:
    await store.ensure_retention({**KEEP, "processed": WEEK})
    await store.ensure_retention({**KEEP, "processed": 3 * DAY})
    assert await retention.current(store.collection) == {**KEEP, "processed": 3 * DAY}


async def test_an_agent_without_the_setting_leaves_the_index_and_says_so(
    store: MongoWorkStore,
) -> None:
    await store.ensure_retention({**KEEP, "processed": WEEK})
    [(level, message)] = await store.ensure_retention(KEEP)
    assert level == "warning"
    assert message.startswith(
        "RETAIN_PROCESSED is unset here, but the collection deletes "
        "processed documents 7d after processed_at"
    )
    assert "Set RETAIN_PROCESSED=7d" in message
    assert await retention.current(store.collection) == {**KEEP, "processed": WEEK}


@pytest.mark.parametrize("value", ["30m", "59m", "0", "-1d", "7 days", "1e9", "nan", "3651d"])
def test_a_bad_retention_is_refused_naming_the_setting(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"^RETAIN_FAILED is invalid: .*at least 1h"):
        make_settings(tmp_path, RETAIN_FAILED=value)


@pytest.mark.parametrize(
    ("value", "seconds"), [("1h", 3600.0), ("7d", WEEK), ("36h", 1.5 * DAY), ("", None)]
)
def test_retention_durations(tmp_path: Path, value: str, seconds: float | None) -> None:
    assert make_settings(tmp_path, RETAIN_PROCESSED=value).retain_processed == seconds
