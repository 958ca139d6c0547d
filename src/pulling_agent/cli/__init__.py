"""The ``pulling-agent`` command: ``entry`` (the console script, import-light), ``main`` (the
root app), one module per command group (``run``, ``queue``, ``doctor``, ``ctl``, ``jobs``)
over the shared helpers (``remote``, ``options``, ``terminal``)."""
