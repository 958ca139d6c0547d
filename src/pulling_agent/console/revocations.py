"""Signed-out sessions, fleet-wide: a record per revoked session in MongoDB.

Any agent serves the console, so signing out on one must end the session on all of them:
sign-out writes ``{_id: "session-revoked:<nonce>", kind: "session_revocation",
expires_at}`` to the control collection, and every request checks the session's nonce
against it (one read by ``_id``). A TTL index on ``expires_at`` removes each record once
the session it revokes would have expired anyway, so the records never pile up.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

KIND = "session_revocation"
TTL_INDEX = "pulling_agent_session_revocation_ttl"


class Revocations:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection
        self._indexed = False

    @staticmethod
    def _id(nonce: str) -> str:
        return f"session-revoked:{nonce[:64]}"

    async def revoke(self, nonce: str, expires: float) -> None:
        """End the session whose nonce this is, on every agent."""
        await self._ensure_index()
        until = datetime.fromtimestamp(expires, UTC)
        with contextlib.suppress(DuplicateKeyError):  # signed out twice
            await self.collection.insert_one(
                {"_id": self._id(nonce), "kind": KIND, "expires_at": until}
            )

    async def revoked(self, nonce: str) -> bool:
        return await self.collection.find_one({"_id": self._id(nonce)}, {"_id": 1}) is not None

    async def _ensure_index(self) -> None:
        if self._indexed:
            return
        with contextlib.suppress(OperationFailure):  # an index of that name exists already
            await self.collection.create_index(
                "expires_at",
                name=TTL_INDEX,
                expireAfterSeconds=0,
                partialFilterExpression={"kind": KIND},
            )
        self._indexed = True
