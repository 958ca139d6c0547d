"""The cluster control document in MongoDB: issue commands, read state and history.

No transaction is needed (a standalone has none): the version comes from one atomic
``find_one_and_update`` with ``$inc``, and the audit entry is written with that version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from pulling_agent.control.cluster import CONTROL_ID, ClusterCommand, ControlState

Document = dict[str, Any]


class ClusterControlStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def issue(
        self, command: ClusterCommand, reason: str, identity: str, note: str, now: datetime
    ) -> ControlState:
        """Set the command, bump the version atomically, append an audit entry."""
        fields = {
            "command": command.value,
            "timestamp": now,
            "reason": reason,
            "updated_by": identity,
            "note": note,
        }
        doc = await self.collection.find_one_and_update(
            {"_id": CONTROL_ID},
            {"$set": fields, "$inc": {"version": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # upsert with ReturnDocument.AFTER always returns one
        state = ControlState.from_document(doc)
        await self.collection.insert_one(
            {
                "_id": f"audit-{state.version:012d}-{uuid.uuid4().hex[:8]}",
                "kind": "audit",
                "version": state.version,
                **fields,
            }
        )
        return state

    async def read(self) -> ControlState | None:
        doc = await self.collection.find_one({"_id": CONTROL_ID})
        return None if doc is None else ControlState.from_document(doc)

    async def history(self, limit: int) -> list[Document]:
        cursor = self.collection.find(
            {"kind": "audit"}, sort=[("version", DESCENDING)], limit=limit
        )
        return await cursor.to_list(length=limit)
