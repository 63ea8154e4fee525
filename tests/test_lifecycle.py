"""The per-guest lifecycle: the transition table, classification into outcome and phase."""

from __future__ import annotations

import math
from collections import deque

import pytest

from loadkit.errors import LocalProtocolError
from loadkit.lifecycle import (
    TRANSITIONS,
    Cause,
    Ending,
    Lifecycle,
    Outcome,
    Phase,
    Result,
    State,
    Step,
    classify,
    phase_of,
)

JUST_AFTER = 5.0

LEGAL = [(state, step, nxt) for state, steps in TRANSITIONS.items() for step, nxt in steps.items()]
ILLEGAL = [(state, step) for state in State for step in Step if step not in TRANSITIONS.get(state, {})]


def path_to(target: State) -> list[Step]:
    """The shortest list of steps from ``new`` to ``target`` (breadth-first over the table)."""
    queue: deque[tuple[State, list[Step]]] = deque([(State.NEW, [])])
    seen = {State.NEW}
    while queue:
        state, steps = queue.popleft()
        if state is target:
            return steps
        for step, nxt in TRANSITIONS[state].items():
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, [*steps, step]))
    raise AssertionError(f"{target} is unreachable from new")


def lifecycle_in(state: State, now: float = 0.0) -> Lifecycle:
    lc = Lifecycle(now)
    for step in path_to(state):
        lc.step(step, now)
    assert lc.state is state
    return lc


# -- the table ----------------------------------------------------------------------


def test_the_table_has_a_row_for_every_state_and_every_state_is_reachable_from_new() -> None:
    assert set(TRANSITIONS) == set(State)
    for state in State:
        path_to(state)


def test_ended_is_final_and_every_state_after_begin_can_end() -> None:
    assert TRANSITIONS[State.ENDED] == {}
    for state in set(State) - {State.NEW, State.ENDED}:
        assert TRANSITIONS[state][Step.END] is State.ENDED


@pytest.mark.parametrize(("state", "step", "nxt"), LEGAL, ids=[f"{s}-{t}" for s, t, _ in LEGAL])
def test_every_legal_step_moves_to_the_state_the_table_names(state: State, step: Step, nxt: State) -> None:
    lc = lifecycle_in(state)
    assert lc.step(step, 1.0) is nxt
    assert lc.state is nxt


@pytest.mark.parametrize(("state", "step"), ILLEGAL, ids=[f"{s}-{t}" for s, t in ILLEGAL])
def test_every_illegal_step_raises_a_local_protocol_error_naming_step_and_state(state: State, step: Step) -> None:
    lc = lifecycle_in(state)
    with pytest.raises(LocalProtocolError) as info:
        lc.step(step, 1.0)
    assert str(info.value) == f"can't handle step {step.value!r} in state {state.value!r}"
    assert lc.state is state


def test_the_illegal_steps_are_exactly_those_missing_from_the_table() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(State) * len(Step)
    assert (State.NEW, Step.END) in ILLEGAL  # a session that never began cannot end
    assert (State.AUTHENTICATING, Step.BEGIN) in ILLEGAL


def test_opened_and_auth_ok_stamp_their_times() -> None:
    lc = Lifecycle(10.0)
    lc.step(Step.BEGIN, 10.5)
    lc.step(Step.TOKEN_OK, 11.0)
    assert lc.opened_at is None and lc.auth_at is None and not lc.authenticated
    lc.step(Step.OPENED, 11.25)
    lc.step(Step.AUTH_OK, 11.5)
    assert (lc.started_at, lc.opened_at, lc.auth_at) == (10.0, 11.25, 11.5)
    assert lc.authenticated and not lc.ended
    assert lc.established_s(20.5) == 9.0


def test_a_resumed_session_skips_the_token_step() -> None:
    lc = Lifecycle(0.0)
    assert lc.step(Step.RESUME, 0.0) is State.CONNECTING


# -- end, exactly once ----------------------------------------------------------------


def test_a_session_ends_exactly_once() -> None:
    lc = lifecycle_in(State.ESTABLISHED)
    first = lc.end(Ending(Cause.SESSION_DONE, 1000, "", "client"), 30.0, JUST_AFTER)
    assert lc.ended and lc.result == first and lc.ended_at == 30.0
    with pytest.raises(LocalProtocolError, match="can't handle step 'end' in state 'ended'"):
        lc.end(Ending(Cause.CLOSED, 1006, "", "none"), 31.0, JUST_AFTER)
    assert lc.result == first and lc.ended_at == 30.0


def test_established_time_stops_at_the_end() -> None:
    lc = Lifecycle(0.0)
    for step, t in ((Step.BEGIN, 0.0), (Step.TOKEN_OK, 1.0), (Step.OPENED, 2.0), (Step.AUTH_OK, 3.0)):
        lc.step(step, t)
    lc.end(Ending(Cause.SESSION_DONE), 63.0, JUST_AFTER)
    assert lc.established_s(1000.0) == 60.0


def test_a_session_that_never_authenticated_was_established_for_no_time() -> None:
    lc = lifecycle_in(State.AUTHENTICATING)
    lc.end(Ending(Cause.AUTH_TIMEOUT), 15.0, JUST_AFTER)
    assert lc.established_s(99.0) == 0.0


@pytest.mark.parametrize("state", [State.TOKEN, State.CONNECTING, State.AUTHENTICATING,
                                   State.ESTABLISHED, State.CLOSING])
def test_end_classifies_by_the_state_the_session_was_in_not_ended(state: State) -> None:
    lc = lifecycle_in(state, now=100.0)
    result = lc.end(Ending(Cause.STOPPED), 200.0, JUST_AFTER)
    expected_phase = {State.TOKEN: Phase.TOKEN, State.CONNECTING: Phase.BEFORE_OPEN}.get(
        state, Phase.ESTABLISHED if lc.authenticated else Phase.DURING_AUTH)
    assert result == Result(Outcome.STOPPED_BY_HARNESS, expected_phase, lc.authenticated)


# -- phases -----------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "authenticated", "since", "phase"), [
    (State.NEW, False, None, Phase.TOKEN),
    (State.TOKEN, False, None, Phase.TOKEN),
    (State.CONNECTING, False, None, Phase.BEFORE_OPEN),
    (State.AUTHENTICATING, False, None, Phase.DURING_AUTH),
    (State.CLOSING, False, None, Phase.DURING_AUTH),
    (State.ESTABLISHED, True, 0.0, Phase.JUST_AFTER_AUTH),
    (State.ESTABLISHED, True, JUST_AFTER, Phase.JUST_AFTER_AUTH),
    (State.ESTABLISHED, True, math.nextafter(JUST_AFTER, math.inf), Phase.ESTABLISHED),
    (State.ESTABLISHED, True, 3600.0, Phase.ESTABLISHED),
    (State.ESTABLISHED, True, None, Phase.ESTABLISHED),
    (State.CLOSING, True, 1.0, Phase.JUST_AFTER_AUTH),
    (State.CLOSING, True, 60.0, Phase.ESTABLISHED),
])
def test_phase_of(state: State, authenticated: bool, since: float | None, phase: Phase) -> None:
    assert phase_of(state, authenticated, since, JUST_AFTER) is phase


@pytest.mark.parametrize(("end_at", "phase"), [
    (100.0, Phase.JUST_AFTER_AUTH),
    (100.0 + JUST_AFTER, Phase.JUST_AFTER_AUTH),
    (math.nextafter(100.0 + JUST_AFTER, math.inf), Phase.ESTABLISHED),
])
def test_just_after_auth_ends_at_exactly_just_after_auth_seconds(end_at: float, phase: Phase) -> None:
    lc = lifecycle_in(State.AUTHENTICATING)
    lc.step(Step.AUTH_OK, 100.0)
    result = lc.end(Ending(Cause.CLOSED, 1012, "service restart", "server"), end_at, JUST_AFTER)
    assert result == Result(Outcome.DROPPED_BY_SERVER, phase, True)


# -- outcomes: causes other than a close -------------------------------------------------

DIRECT = {
    Cause.CONNECT_REFUSED: Outcome.CONNECT_REFUSED,
    Cause.CONNECT_FAILED: Outcome.CONNECT_FAILED,
    Cause.UPGRADE_REFUSED: Outcome.UPGRADE_REFUSED,
    Cause.TOKEN_REFUSED: Outcome.TOKEN_REFUSED,
    Cause.AUTH_TIMEOUT: Outcome.AUTH_TIMEOUT,
    Cause.KEEPALIVE_TIMEOUT: Outcome.KEEPALIVE_TIMEOUT,
    Cause.SESSION_DONE: Outcome.CLOSED_NORMALLY,
    Cause.SERVER_ENDED: Outcome.DROPPED_BY_SERVER,
    Cause.AUTH_REFUSED: Outcome.AUTH_REFUSED,
    Cause.SESSION_EXPIRED: Outcome.SESSION_EXPIRED,
    Cause.GOODBYE_INCOMPLETE: Outcome.GOODBYE_INCOMPLETE,
    Cause.STOPPED: Outcome.STOPPED_BY_HARNESS,
    Cause.PROTOCOL_ERROR: Outcome.PROTOCOL_ERROR,
    Cause.HARNESS_ERROR: Outcome.HARNESS_ERROR,
}


def test_every_cause_but_closed_has_one_outcome_here() -> None:
    assert set(DIRECT) | {Cause.CLOSED} == set(Cause)


@pytest.mark.parametrize("cause", DIRECT)
@pytest.mark.parametrize("authenticated", [False, True])
@pytest.mark.parametrize("close", [(None, "", None), (1000, "", "client"), (1006, "", "none"),
                                   (4001, "unauthorized", "server"), (4006, "session expired", "server")])
def test_a_cause_other_than_closed_names_the_outcome_whatever_the_close(
        cause: Cause, authenticated: bool, close: tuple[int | None, str, str | None]) -> None:
    ending = Ending(cause, *close, refused=True, expired=True)
    state = State.ESTABLISHED if authenticated else State.AUTHENTICATING
    result = classify(ending, state, authenticated, 60.0 if authenticated else None, JUST_AFTER)
    assert result.outcome is DIRECT[cause]
    assert result.authenticated is authenticated


# -- outcomes: a close by the target, code by code ---------------------------------------

#: The close table of guest-protocol.md: (code, reason, initiator) → outcome while
#: authenticating, and outcome once authenticated.
CLOSES = {
    (1000, "", "server"): (Outcome.AUTH_REFUSED, Outcome.DROPPED_BY_SERVER),  # the silent 1000
    (4001, "unauthorized", "server"): (Outcome.AUTH_REFUSED, Outcome.DROPPED_BY_SERVER),
    (4003, "forbidden", "server"): (Outcome.AUTH_REFUSED, Outcome.DROPPED_BY_SERVER),
    (4008, "auth timeout", "server"): (Outcome.AUTH_TIMEOUT, Outcome.DROPPED_BY_SERVER),
    (1001, "idle timeout", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (1001, "going away", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (1012, "service restart", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (1013, "try again later", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (1011, "internal error", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (1009, "message too big", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (1007, "invalid payload", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (4006, "session expired", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.SESSION_EXPIRED),
    (4029, "rate limit", "server"): (Outcome.DROPPED_BY_SERVER, Outcome.DROPPED_BY_SERVER),
    (1006, "", "none"): (Outcome.CONNECTION_LOST, Outcome.CONNECTION_LOST),
}


@pytest.mark.parametrize("close", CLOSES, ids=[f"{c}-{r or 'empty'}" for c, r, _ in CLOSES])
def test_a_close_during_auth_maps_to_its_outcome_in_phase_during_auth(close: tuple[int, str, str]) -> None:
    result = classify(Ending(Cause.CLOSED, *close), State.AUTHENTICATING, False, None, JUST_AFTER)
    assert result == Result(CLOSES[close][0], Phase.DURING_AUTH, False)
    assert not result.is_drop


@pytest.mark.parametrize("since", [1.0, 600.0])
@pytest.mark.parametrize("close", CLOSES, ids=[f"{c}-{r or 'empty'}" for c, r, _ in CLOSES])
def test_a_close_after_auth_maps_to_its_outcome_in_its_phase(close: tuple[int, str, str], since: float) -> None:
    result = classify(Ending(Cause.CLOSED, *close), State.ESTABLISHED, True, since, JUST_AFTER)
    phase = Phase.JUST_AFTER_AUTH if since <= JUST_AFTER else Phase.ESTABLISHED
    assert result == Result(CLOSES[close][1], phase, True)
    assert result.is_drop


def test_the_reference_gateway_sends_only_closes_of_the_protocol_table() -> None:
    from loadkit.gateway.server import CLOSES as GATEWAY_CLOSES

    assert {(code, reason, "server") for code, reason in GATEWAY_CLOSES.values()} <= set(CLOSES)


def test_a_refusal_frame_before_the_close_makes_any_close_during_auth_an_auth_refusal() -> None:
    ending = Ending(Cause.CLOSED, 1001, "going away", "server", refused=True)
    assert classify(ending, State.AUTHENTICATING, False, None, JUST_AFTER).outcome is Outcome.AUTH_REFUSED


def test_a_session_expired_frame_before_the_close_makes_it_session_expired_whatever_the_code() -> None:
    ending = Ending(Cause.CLOSED, 1000, "", "server", expired=True)
    assert classify(ending, State.ESTABLISHED, True, 60.0, JUST_AFTER).outcome is Outcome.SESSION_EXPIRED


@pytest.mark.parametrize("code", [1000, 1001, 1006, 4006, None])
@pytest.mark.parametrize("authenticated", [False, True])
def test_no_close_frame_at_all_is_a_lost_connection(code: int | None, authenticated: bool) -> None:
    ending = Ending(Cause.CLOSED, code, "", "none")
    state = State.ESTABLISHED if authenticated else State.AUTHENTICATING
    result = classify(ending, state, authenticated, 60.0 if authenticated else None, JUST_AFTER)
    assert result.outcome is Outcome.CONNECTION_LOST


def test_a_lost_connection_before_the_upgrade_completed_is_in_phase_before_open() -> None:
    result = classify(Ending(Cause.CLOSED, 1006, "", "none"), State.CONNECTING, False, None, JUST_AFTER)
    assert result == Result(Outcome.CONNECTION_LOST, Phase.BEFORE_OPEN, False)


# -- drops ------------------------------------------------------------------------------------

DROPS = {Outcome.DROPPED_BY_SERVER, Outcome.CONNECTION_LOST, Outcome.SESSION_EXPIRED,
         Outcome.KEEPALIVE_TIMEOUT, Outcome.PROTOCOL_ERROR}


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize("authenticated", [False, True])
def test_a_result_is_a_drop_only_if_authenticated_and_neither_side_asked_for_the_end(
        outcome: Outcome, authenticated: bool) -> None:
    result = Result(outcome, Phase.ESTABLISHED if authenticated else Phase.DURING_AUTH, authenticated)
    assert result.is_drop is (authenticated and outcome in DROPS)
