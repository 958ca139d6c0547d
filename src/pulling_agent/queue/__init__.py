"""The work queue: a storage protocol, its MongoDB and in-memory implementations, retries."""

from pulling_agent.queue.model import (
    Claim,
    ClaimKind,
    Completion,
    ErrorInfo,
    OutcomeKind,
    Status,
    WorkStore,
)

__all__ = [
    "Claim",
    "ClaimKind",
    "Completion",
    "ErrorInfo",
    "OutcomeKind",
    "Status",
    "WorkStore",
]
