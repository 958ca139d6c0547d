"""One exception hierarchy; every message says what to do about it."""


class PullingAgentError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(PullingAgentError):
    """The configuration is invalid. The message names the variable and the fix."""


class HandlerLoadError(PullingAgentError):
    """The ``HANDLER`` could not be imported or is not callable."""


class IllegalTransition(PullingAgentError):
    """An agent state change that the state machine does not allow (a bug, not user input)."""


class EmbeddedServerError(PullingAgentError):
    """The embedded MongoDB-wire server could not be started."""


class StoreUnavailable(PullingAgentError):
    """MongoDB could not be reached or refused the command (one line, secrets removed)."""
