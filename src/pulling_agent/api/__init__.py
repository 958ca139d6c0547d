"""The HTTP API: an app factory, bearer-token auth, and a server that runs inside the
agent's event loop without touching the process's signals."""
