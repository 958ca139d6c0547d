"""One agent process: the agent's lifecycle (``agent``), the work pipeline (``pipeline``),
the user's handlers (``handlers``), rate limits, the store breaker, health files, states,
metrics and early signals. No HTTP, no control service, no scheduler."""
