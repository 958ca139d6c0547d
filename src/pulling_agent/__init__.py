"""pulling-agent: pull work documents from MongoDB, run a handler on each, record the outcome."""

__version__ = "0.1.0"
