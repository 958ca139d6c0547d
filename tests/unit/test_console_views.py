"""Console views alone (no app, no server): each is a module-level function from a request
to its template's context, so what it makes of hostile query parameters is checked here;
what it reads from MongoDB is tested over the wire in tests/integration/test_console.py."""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import urlencode

from bson import ObjectId, json_util
from starlette.requests import Request

from pulling_agent.console import routes
from pulling_agent.console.routes import UI


class Recorded:
    """Stands in for ConsoleData: records what a view asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    async def failed_page(self, kind: str, text: str, before: Any) -> tuple[list[Any], Any]:
        self.asked.append(("failed_page", (kind, text, before)))
        return [{"_id": 1}], ObjectId("64b000000000000000000000")

    async def error_types(self) -> list[str]:
        return ["ValueError"]

    async def document(self, raw: str) -> tuple[Any, list[Any]]:
        self.asked.append(("document", raw))
        return None, []


def request(**query: str) -> Request:
    return Request({"type": "http", "query_string": urlencode(query).encode(), "headers": []})


def ui(data: Recorded) -> UI:
    nothing = cast(Any, None)  # what these views do not use
    return UI(cast(Any, data), nothing, nothing, nothing, nothing, nothing, nothing)


async def test_the_dead_letter_view_reads_its_filters_as_inert_bounded_text() -> None:
    data = Recorded()
    hostile = "\x1b[2J<script>\u202e" * 30  # JSON-quoted by the page, as the select sends it
    context = await routes.dlq(
        request(type=json.dumps(hostile), q="x" * 5_000, before="not json"), ui(data)
    )
    [(_, (kind, text, before))] = data.asked[:1]
    assert kind == hostile[:200] and len(text) == 200 and before is None
    await routes.dlq(request(type="y" * 5_000), ui(data))
    assert data.asked[-1][1][0] == "y" * 200
    assert context["filter_type"] == kind and context["types"] == ["ValueError"]
    assert json_util.loads(context["next"]) == ObjectId("64b000000000000000000000")


async def test_the_dead_letter_view_pages_from_an_encoded_id() -> None:
    data = Recorded()
    before = json_util.dumps(ObjectId("64b000000000000000000001"))
    await routes.dlq(request(before=before), ui(data))
    assert data.asked == [("failed_page", ("", "", ObjectId("64b000000000000000000001")))]


async def test_the_document_view_asks_nothing_without_an_id_and_cuts_a_long_one() -> None:
    data = Recorded()
    assert await routes.document(request(), ui(data)) == {"doc": None, "raw": "", "problems": []}
    assert data.asked == []
    await routes.document(request(id="9" * 1_000), ui(data))
    assert data.asked == [("document", "9" * 200)]
