"""What the store tells the agent while it works, logged and counted: malformed documents it
dead-lettered (``queue.malformed``), batches it closed and dependents it cancelled while
settling outcomes (``queue.batch_closed``, ``queue.dependents_cancelled``; queue.workflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pulling_agent.queue.model import Rejection, WorkStore
from pulling_agent.text import safe_text

if TYPE_CHECKING:
    from pulling_agent.runtime.pipeline import Counters

WORKFLOW_EVENTS = {
    "batch_closed": "batch ended: its then job is pending",
    "dependents_cancelled": "dependents cancelled: a document they wait for did not succeed",
}
SHOWN_IDS = ("then_id", "dependency", "id")  # ids from documents: shown as bounded text


class StoreReports:
    def __init__(self, counters: Counters, log: Any) -> None:
        self._counters = counters
        self._log = log

    def listen(self, store: WorkStore) -> None:
        store.on_rejected = self.rejected
        store.on_workflow = self.workflow

    def workflow(self, event: str, fields: Mapping[str, Any]) -> None:
        """A batch closed or dependents were cancelled while settling outcomes."""
        shown = {k: safe_text(v, 200) if k in SHOWN_IDS else v for k, v in fields.items()}
        if event == "batch_closed":
            self._counters.batches_closed += 1
        elif event == "dependents_cancelled":
            self._counters.dependents_cancelled += int(fields.get("count", 0))
        self._log.info(WORKFLOW_EVENTS.get(event, event), action=f"queue.{event}", **shown)

    def rejected(self, rejection: Rejection) -> None:
        self._counters.malformed += 1
        problem = rejection.problem
        self._log.error(
            "malformed document dead-lettered"
            if rejection.dead_lettered
            else "malformed document skipped (it could not even be dead-lettered)",
            action="queue.malformed",
            doc_id=safe_text(rejection.doc_id, 200),
            stage=rejection.stage,
            field=problem.field,
            value_type=problem.value_type,
            error=problem.message(),
            fix=problem.fix,
        )
