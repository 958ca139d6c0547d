"""One JSON encoding for every BSON type, and no odd value can fail a response."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

from bson import Binary, Decimal128, Int64, ObjectId, Timestamp

from pulling_agent.encoding import iso, to_json


def test_every_bson_type_has_one_json_form() -> None:
    oid = ObjectId("65f1c0ffee0123456789abcd")
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    doc = {
        "oid": oid,
        "uuid": u,
        "uuid_binary": Binary.from_uuid(u),
        "decimal": Decimal128("1.10"),
        "bytes": b"\x00\xff",
        "naive": datetime(2026, 1, 2, 3, 4, 5),
        "berlin": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        "long": Int64(2**62),
        "ts": Timestamp(1700000000, 3),
        "nan": float("nan"),
        "nested": [{1: {oid}}],
        "odd": object(),
    }
    out = to_json(doc)
    json.dumps(out)  # encodable
    assert out["oid"] == "65f1c0ffee0123456789abcd"
    assert out["uuid"] == out["uuid_binary"] == str(u)
    assert out["decimal"] == "1.10"
    assert out["bytes"] == "AP8="
    assert out["naive"] == "2026-01-02T03:04:05+00:00"
    assert out["berlin"] == "2026-01-02T03:04:05+01:00"
    assert out["long"] == 2**62 and type(out["long"]) is int
    assert out["ts"] == {"t": 1700000000, "i": 3}
    assert out["nan"] == "nan"
    assert out["nested"] == [{"1": ["65f1c0ffee0123456789abcd"]}]
    assert out["odd"].startswith("<object object")


def test_times_stored_as_text_are_shown_with_their_zone() -> None:
    assert iso("2026-11-23 13:06:11.374000") == "2026-11-23T13:06:11.374000+00:00"
    assert iso(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00+00:00"
    assert iso("not a time") == "not a time"
