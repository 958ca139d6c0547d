"""What spans agents: the registry of live agents (``registry``) and the control services
behind the API and the CLI (``service``)."""
