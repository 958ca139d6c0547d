"""The HTTP API: an app factory (``app``), routes per area (``routes``), bearer-token auth
(``auth``), and a server that runs inside the agent's event loop without touching the
process's signals (``server``)."""
