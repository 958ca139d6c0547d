"""The cluster control document in MongoDB: issue commands, read state and history.

No transaction is needed (a standalone has none): the version is set by compare-and-set on
the version as read, and the audit entry is written with that version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from pulling_agent.control.cluster import (
    CONTROL_ID,
    MAX_VERSION,
    ClusterCommand,
    ControlState,
    valid_version,
)
from pulling_agent.errors import Conflict

ISSUE_ROUNDS = 20


class ControlConflict(Conflict):
    """The control document kept changing while a command was issued, or its versions
    are used up (API: 409)."""


Document = dict[str, Any]


class ClusterControlStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def issue(
        self,
        command: ClusterCommand,
        reason: str,
        identity: str,
        note: str,
        now: datetime,
        floor: int = 0,
    ) -> ControlState:
        """Set the command with the next version and append an audit entry.

        Versions only go up, whatever was done to the document by hand: the next one is
        above the document's version (if usable), the highest in the audit history and
        ``floor`` (the highest version an agent reports having applied), so a document
        deleted, recreated or given an unusable version never issues a version the agents
        would ignore. Written by compare-and-set on the version as read, so concurrent
        commands get distinct versions. The timestamp is kept to the millisecond, as
        MongoDB stores it."""
        stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
        fields = {
            "command": command.value,
            "timestamp": stamp,
            "reason": reason,
            "updated_by": identity,
            "note": note,
        }
        for _ in range(ISSUE_ROUNDS):
            current = await self.collection.find_one({"_id": CONTROL_ID})
            version = max(valid_version(current), await self._highest_audited(), floor) + 1
            if version > MAX_VERSION:
                raise ControlConflict(
                    f"control versions are used up ({MAX_VERSION}): delete the control "
                    "document and its audit entries, then restart the agents"
                )
            if current is None:
                try:
                    await self.collection.insert_one(
                        {"_id": CONTROL_ID, **fields, "version": version}
                    )
                except DuplicateKeyError:
                    continue  # another command created it first
            else:
                seen = (
                    {"version": current["version"]}
                    if "version" in current
                    else {"version": {"$exists": False}}
                )
                result = await self.collection.update_one(
                    {"_id": CONTROL_ID, **seen}, {"$set": {**fields, "version": version}}
                )
                if not result.modified_count:
                    continue  # another command won this version
            await self.collection.insert_one(
                {
                    "_id": f"audit-{version:012d}-{uuid.uuid4().hex[:8]}",
                    "kind": "audit",
                    "version": version,
                    **fields,
                }
            )
            return ControlState.from_document({**fields, "version": version})
        raise ControlConflict(
            f"the control document changed {ISSUE_ROUNDS} times while this command was "
            "issued; try again"
        )

    async def _highest_audited(self) -> int:
        cursor = self.collection.find(
            {"kind": "audit"}, {"version": 1}, sort=[("version", DESCENDING)], limit=1
        )
        return max((valid_version(d) for d in await cursor.to_list(length=1)), default=0)

    async def read(self) -> ControlState | None:
        doc = await self.collection.find_one({"_id": CONTROL_ID})
        return None if doc is None else ControlState.from_document(doc)

    async def history(self, limit: int) -> list[Document]:
        cursor = self.collection.find(
            {"kind": "audit"}, sort=[("version", DESCENDING)], limit=limit
        )
        return await cursor.to_list(length=limit)
