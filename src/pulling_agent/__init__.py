"""pulling-agent: pull work documents from MongoDB, run a handler on each, record the outcome.

The handler-facing API (:class:`Context`, :class:`Retry`, :class:`Fail`, :class:`Skip`,
:class:`Cancel`, :class:`Worker`) is imported lazily, so that ``pulling-agent run`` can
take over the process's signals before anything heavy is imported (see early_signals.py).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time they are imported on first use
    from pulling_agent.scheduler.factory import JobFactory
    from pulling_agent.work import Cancel, Context, Fail, Retry, Skip
    from pulling_agent.worker import Worker

__version__ = "0.1.0"
__all__ = ["Cancel", "Context", "Fail", "JobFactory", "Retry", "Skip", "Worker", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Cancel", "Context", "Fail", "Retry", "Skip"):
        from pulling_agent import work

        return getattr(work, name)
    if name == "Worker":
        from pulling_agent.worker import Worker

        return Worker
    if name == "JobFactory":
        from pulling_agent.scheduler.factory import JobFactory

        return JobFactory
    raise AttributeError(f"module 'pulling_agent' has no attribute {name!r}")
