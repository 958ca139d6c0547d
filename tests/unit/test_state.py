import pytest

from pulling_agent.errors import IllegalTransition
from pulling_agent.runtime.state import TRANSITIONS, AgentState, check_transition, is_ready


def test_every_state_can_reach_stopped_and_stopped_is_final() -> None:
    for state in AgentState:
        if state is AgentState.STOPPED:
            assert TRANSITIONS[state] == frozenset()
        else:
            assert AgentState.STOPPING in TRANSITIONS[state] or state is AgentState.STOPPING


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (AgentState.PAUSED, AgentState.PAUSING),
        (AgentState.STOPPING, AgentState.RUNNING),
        (AgentState.STOPPED, AgentState.STARTING),
        (AgentState.STARTING, AgentState.PAUSING),
    ],
)
def test_illegal_transitions_raise(current: AgentState, target: AgentState) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(current, target)


def test_only_running_is_ready() -> None:
    assert [s for s in AgentState if is_ready(s)] == [AgentState.RUNNING]
