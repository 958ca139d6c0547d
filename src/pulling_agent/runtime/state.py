"""Agent states and the legal transitions between them (pure, no I/O)."""

from enum import StrEnum

from pulling_agent.errors import IllegalTransition


class AgentState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"


_S = AgentState

TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    _S.STARTING: frozenset({_S.RUNNING, _S.PAUSED, _S.STOPPING}),
    # running -> pausing while in-flight work drains; straight to paused when nothing is held
    _S.RUNNING: frozenset({_S.PAUSING, _S.PAUSED, _S.STOPPING}),
    _S.PAUSING: frozenset({_S.PAUSED, _S.RUNNING, _S.STOPPING}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.STOPPING}),
    _S.STOPPING: frozenset({_S.STOPPED}),
    _S.STOPPED: frozenset(),
}


def check_transition(current: AgentState, target: AgentState) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is allowed."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"agent cannot go from {current} to {target}")


def is_ready(state: AgentState) -> bool:
    """Readiness holds exactly while the agent is running."""
    return state is AgentState.RUNNING
