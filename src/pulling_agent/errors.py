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


class NotFound(PullingAgentError, LookupError):
    """No such job (API: 404; console: 404)."""


class Conflict(PullingAgentError, RuntimeError):
    """The request cannot be served by this agent (API: 409); the message says where."""


class InvalidJob(PullingAgentError, ValueError):
    """A job that cannot be enqueued as given; nothing was written (the producer API and
    ``pulling-agent enqueue``)."""
