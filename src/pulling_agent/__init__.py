"""pulling-agent: pull work documents from MongoDB, run a handler on each, record the outcome.

The handler-facing API (:class:`Context`, :class:`Retry`, :class:`Fail`, :class:`Skip`,
:class:`Cancel`) is imported lazily, so that ``pulling-agent run`` can take over the
process's signals before anything heavy is imported (see early_signals.py).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Cancel", "Context", "Fail", "Retry", "Skip", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Cancel", "Context", "Fail", "Retry", "Skip"):
        from pulling_agent import work

        return getattr(work, name)
    raise AttributeError(f"module 'pulling_agent' has no attribute {name!r}")
