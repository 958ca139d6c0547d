"""Pause sources and how they combine: per-source pause requests (``requests``), the control
file (``file``), the cluster control document with its audit trail (``cluster``,
``cluster_store``) and the agent's follower of it (``follower``)."""
