"""The lifecycle of one guest session: states, phases, causes and outcomes.

Theory of operation
-------------------
A session walks ``new → token → connecting → authenticating → established
→ closing → ended``; every legal step is one entry of ``TRANSITIONS`` and
anything else is a ``LocalProtocolError`` (a harness bug, never the
target's fault). A reconnect skips the token step when the profile lets a
guest reuse its grant (``RESUME``).

Every session ends exactly once, with an ``Ending`` that says what happened
on the wire (the *cause*, plus the close code, reason and initiator when
there was a WebSocket close). ``classify`` turns that into the two things a
report needs: the *outcome* (one name from ``Outcome``) and the *phase* the
session was in (``Phase``). The phase is where the seed thread's symptom
shows: a session closed within a few seconds of ``auth_ok`` ends in
``just_after_auth``, not ``established``.

No clocks here: callers pass timestamps (seconds, any monotonic origin).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loadkit.errors import LocalProtocolError
from loadkit.protocol.codes import NO_CLOSE_FRAME


class State(enum.StrEnum):
    NEW = "new"
    TOKEN = "token"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    ESTABLISHED = "established"
    CLOSING = "closing"
    ENDED = "ended"


class Step(enum.StrEnum):
    BEGIN = "begin"          #: start with the token call
    RESUME = "resume"        #: a reconnect that reuses its grant: straight to connect
    TOKEN_OK = "token_ok"
    OPENED = "opened"        #: the upgrade was answered 101: frames may flow
    AUTH_OK = "auth_ok"
    CLOSE_SENT = "close_sent"  #: the client started the close handshake
    GOODBYE = "goodbye"      #: the guest's length was reached: its goodbye frames went out, answers awaited
    END = "end"


S, T = State, Step

#: Every legal transition: {state: {step: next state}}.
TRANSITIONS: dict[State, dict[Step, State]] = {
    S.NEW: {T.BEGIN: S.TOKEN, T.RESUME: S.CONNECTING},
    S.TOKEN: {T.TOKEN_OK: S.CONNECTING, T.END: S.ENDED},
    S.CONNECTING: {T.OPENED: S.AUTHENTICATING, T.END: S.ENDED},
    S.AUTHENTICATING: {T.AUTH_OK: S.ESTABLISHED, T.CLOSE_SENT: S.CLOSING, T.END: S.ENDED},
    S.ESTABLISHED: {T.CLOSE_SENT: S.CLOSING, T.GOODBYE: S.CLOSING, T.END: S.ENDED},
    S.CLOSING: {T.END: S.ENDED},
    S.ENDED: {},
}


class Phase(enum.StrEnum):
    """Where in its life a session was when it ended (or a close code came)."""

    TOKEN = "token"
    BEFORE_OPEN = "before_open"
    DURING_AUTH = "during_auth"
    JUST_AFTER_AUTH = "just_after_auth"
    ESTABLISHED = "established"


class Cause(enum.StrEnum):
    """What ended a session, as the session driver saw it."""

    CLOSED = "closed"                    #: the server closed, or the connection was lost
    CONNECT_REFUSED = "connect_refused"
    CONNECT_FAILED = "connect_failed"
    UPGRADE_REFUSED = "upgrade_refused"
    TOKEN_REFUSED = "token_refused"
    AUTH_TIMEOUT = "auth_timeout"        #: we gave up waiting for auth_ok
    KEEPALIVE_TIMEOUT = "keepalive_timeout"  #: no pong within the pong timeout
    SESSION_DONE = "session_done"        #: the session length was reached: a normal close
    SERVER_ENDED = "server_ended"        #: the server ended the session in a frame; we closed
    AUTH_REFUSED = "auth_refused"        #: an in-band refusal (or a session-ending frame) answered auth; we closed
    SESSION_EXPIRED = "session_expired"  #: the server said the session expired and left the socket open; we closed
    GOODBYE_INCOMPLETE = "goodbye_incomplete"  #: the goodbye was not answered in time, refused, or cut short
    STOPPED = "stopped"                  #: the harness is stopping
    PROTOCOL_ERROR = "protocol_error"    #: the target broke the WebSocket protocol
    HARNESS_ERROR = "harness_error"      #: a bug in loadkit (counted, never hidden)


class Outcome(enum.StrEnum):
    """The one named way each session ends."""

    CLOSED_NORMALLY = "closed_normally"
    STOPPED_BY_HARNESS = "stopped_by_harness"
    DROPPED_BY_SERVER = "dropped_by_server"
    CONNECTION_LOST = "connection_lost"
    SESSION_EXPIRED = "session_expired"
    #: the guest said goodbye and the target did not confirm it (no answer within the
    #: goodbye timeout, a refusal, or the connection lost mid-goodbye): not a drop (the
    #: guest was leaving), and not closed_normally (the target may keep the session)
    GOODBYE_INCOMPLETE = "goodbye_incomplete"
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    AUTH_REFUSED = "auth_refused"
    AUTH_TIMEOUT = "auth_timeout"
    TOKEN_REFUSED = "token_refused"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_FAILED = "connect_failed"
    UPGRADE_REFUSED = "upgrade_refused"
    PROTOCOL_ERROR = "protocol_error"
    HARNESS_ERROR = "harness_error"


#: Outcomes that, for an authenticated session, count as a drop: the session
#: ended and neither the guest nor the harness asked for it.
DROP_OUTCOMES = frozenset({
    Outcome.DROPPED_BY_SERVER,
    Outcome.CONNECTION_LOST,
    Outcome.SESSION_EXPIRED,
    Outcome.KEEPALIVE_TIMEOUT,
    Outcome.PROTOCOL_ERROR,
})

_DIRECT: dict[Cause, Outcome] = {
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

#: Server close codes during auth that mean "your auth was refused"; the
#: silent-1000 of the seed thread is the first of them.
AUTH_REFUSAL_CODES = frozenset({1000, 1008, 4001, 4003})
AUTH_TIMEOUT_CODES = frozenset({4008})
SESSION_EXPIRED_CODES = frozenset({4006})


@dataclass(slots=True, frozen=True)
class Ending:
    """How a session ended on the wire."""

    cause: Cause
    code: int | None = None        #: close code (1006: no close frame), if a socket was open
    reason: str = ""
    initiator: str | None = None   #: "server", "client" or "none", if a socket was open
    detail: str = ""               #: e.g. "HTTP 503", "timeout"
    #: The server said so in a frame before closing (an error frame refusing
    #: auth, ``session_expired``): it names the outcome even when the close
    #: code alone would not.
    refused: bool = False
    expired: bool = False


@dataclass(slots=True, frozen=True)
class Result:
    outcome: Outcome
    phase: Phase
    authenticated: bool

    @property
    def is_drop(self) -> bool:
        return self.authenticated and self.outcome in DROP_OUTCOMES


def classify(ending: Ending, state: State, authenticated: bool, since_auth_s: float | None,
             just_after_auth_s: float) -> Result:
    """The outcome and phase of a session that ended in ``state``."""
    phase = phase_of(state, authenticated, since_auth_s, just_after_auth_s)
    outcome = _DIRECT.get(ending.cause)
    if outcome is None:  # Cause.CLOSED: the target ended it
        code = ending.code
        if authenticated and (ending.expired or (code in SESSION_EXPIRED_CODES and ending.initiator != "none")):
            # The server said why before the link went: that names the end.
            outcome = Outcome.SESSION_EXPIRED
        elif ending.initiator == "none" or code == NO_CLOSE_FRAME:
            outcome = Outcome.CONNECTION_LOST
        elif not authenticated:
            if ending.refused or code in AUTH_REFUSAL_CODES:
                outcome = Outcome.AUTH_REFUSED
            elif code in AUTH_TIMEOUT_CODES:
                outcome = Outcome.AUTH_TIMEOUT
            else:
                outcome = Outcome.DROPPED_BY_SERVER
        else:
            outcome = Outcome.DROPPED_BY_SERVER
    return Result(outcome, phase, authenticated)


def phase_of(state: State, authenticated: bool, since_auth_s: float | None,
             just_after_auth_s: float) -> Phase:
    if state is State.TOKEN or state is State.NEW:
        return Phase.TOKEN
    if state is State.CONNECTING:
        return Phase.BEFORE_OPEN
    if not authenticated:
        return Phase.DURING_AUTH
    if since_auth_s is not None and since_auth_s <= just_after_auth_s:
        return Phase.JUST_AFTER_AUTH
    return Phase.ESTABLISHED


class Lifecycle:
    """One session's position in ``TRANSITIONS``, with its timestamps."""

    __slots__ = ("state", "started_at", "opened_at", "auth_at", "ended_at", "result", "resumed")

    def __init__(self, now: float) -> None:
        self.state = State.NEW
        self.started_at = now
        self.opened_at: float | None = None
        self.auth_at: float | None = None
        self.ended_at: float | None = None
        self.result: Result | None = None
        #: a reconnect that reused its grant (no token step)
        self.resumed = False

    def step(self, step: Step, now: float) -> State:
        try:
            nxt = TRANSITIONS[self.state][step]
        except KeyError:
            raise LocalProtocolError(
                f"can't handle step {step.value!r} in state {self.state.value!r}"
            ) from None
        if step is Step.RESUME:
            self.resumed = True
        elif step is Step.OPENED:
            self.opened_at = now
        elif step is Step.AUTH_OK:
            self.auth_at = now
        self.state = nxt
        return nxt

    @property
    def authenticated(self) -> bool:
        return self.auth_at is not None

    @property
    def ended(self) -> bool:
        return self.state is State.ENDED

    def end(self, ending: Ending, now: float, just_after_auth_s: float) -> Result:
        """End the session (exactly once) and classify how."""
        before = self.state
        self.step(Step.END, now)
        since = None if self.auth_at is None else now - self.auth_at
        self.ended_at = now
        self.result = classify(ending, before, self.authenticated, since, just_after_auth_s)
        return self.result

    def established_s(self, now: float) -> float:
        """Seconds since auth_ok (0 if never authenticated)."""
        if self.auth_at is None:
            return 0.0
        return (self.ended_at if self.ended_at is not None else now) - self.auth_at
