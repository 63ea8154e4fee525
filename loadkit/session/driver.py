"""The session driver: one guest's sessions, reconnects, and how each one ended.

``SessionDriver`` runs a guest (``run_guest``: a session, then reconnects
with backoff after a drop) and one connection's life (``run_session``):
the phases of ``phases.py`` and ``established.py`` in order, every way they
can end turned into one ``Ending``, and that ending recorded exactly once
(``_finish``), also when the harness stops or has a bug mid-session.
"""

from __future__ import annotations

import time
from functools import partial

from loadkit.connection import ConnectAttempt, Connection
from loadkit.errors import (
    ConnectFailed,
    ConnectionEnded,
    ConnectRefused,
    HttpStatusError,
    TargetProtocolError,
    UpgradeRefused,
)
from loadkit.failures import detail_text, ended_label
from loadkit.lifecycle import Cause, Ending, Lifecycle, Outcome, Result, State, Step
from loadkit.metrics.recorder import HARNESS_LAG, Recorder
from loadkit.protocol.base import (
    TokenGrant,
)
from loadkit.settings import Behaviour, backoff
from loadkit.session.base import (
    NONE_PENDING,
    SessionEnded,
    expected_drop,
    _frame_phase,
    _harness_detail,
    _interrupted_close,
    log_harness_error,
)
from loadkit.session.established import Established
from loadkit.session.phases import Phases


#: The ``ConnectAttempt`` a session holds once its connection is open (nothing writes it then).
_OPENED = ConnectAttempt()


class SessionDriver(Phases, Established):
    """Drives guests through their lifecycle over ``transport``, counting into ``recorder``."""

    __slots__ = ()

    # -- a guest: one session, plus reconnects after drops ---------------------------

    def run_guest(self, guest_no: int, behaviour: Behaviour) -> Result:
        """Run one guest to its end; reconnect (with backoff) after a drop.

        A reconnect reuses the guest's grant while it is valid (the guest
        keeps its identity) and keeps the guest's planned end time. Its
        success and the time to recover (drop → authenticated again) are
        recorded the moment auth succeeds, not when the session ends: the
        run may stop first.
        """
        s = self.settings
        length = self.rng.uniform(*s.session_seconds)
        self._dropped_at = None
        result, grant, end_at = self.run_session(guest_no, behaviour, None, length, None)
        attempt = 0
        while s.reconnect and attempt < s.reconnect_max_attempts and (
            result.is_drop or (self._dropped_at is not None and not result.authenticated)
        ):
            if result.is_drop:
                self._dropped_at = self.transport.now()
                attempt = 0
            attempt += 1
            pause = backoff(attempt, s.reconnect_base_s, s.reconnect_cap_s, self.rng)
            due = self.transport.now() + pause
            self.transport.sleep(pause)
            self.recorder.observe(HARNESS_LAG, int((self.transport.now() - due) * 1e6))
            self.recorder.reconnect_attempts += 1
            # Keep the identity while the grant is good; a refused auth means
            # it is not (a restarted gateway may have a new signing key).
            # An expired session is over too: resuming it would only be refused again.
            refused = result.outcome in (Outcome.AUTH_REFUSED, Outcome.TOKEN_REFUSED, Outcome.SESSION_EXPIRED)
            reuse = grant if grant is not None and not refused and self._grant_valid(grant) else None
            result, new_grant, end_at = self.run_session(guest_no, behaviour, reuse, length, end_at)
            grant = new_grant or grant
        self._dropped_at = None
        return result

    def _grant_valid(self, grant: TokenGrant) -> bool:
        return grant.expires_at is None or grant.expires_at > time.time() + 5

    # -- one session -------------------------------------------------------------

    def run_session(self, guest_no: int, behaviour: Behaviour, grant: TokenGrant | None,
                    length: float, end_at: float | None) -> tuple[Result, TokenGrant | None, float | None]:
        """One connection's life. Returns its result, the grant and the guest's end time."""
        t = self.transport
        rec = self.recorder
        lc = Lifecycle(t.now())
        rec.session_started()
        self.live.open += 1
        ws: Connection | None = None
        ending: Ending | None = None
        attempt = ConnectAttempt()  # how a stop mid-upgrade left the connection
        self._refused = False
        self._expired = False
        self._late_auth_ok = False
        self._bad_seen = False
        try:
            try:
                grant = self._token(lc, grant, guest_no)
                ws = self._connect(lc, grant, attempt)
                attempt = _OPENED  # read only while ws is None: not kept for the session's life
                ending = self._authenticate(lc, ws, grant, behaviour)
                if ending is None:
                    if end_at is None:
                        end_at = lc.auth_at + length  # type: ignore[operator]
                    ending = self._established(lc, ws, grant, behaviour, end_at)
            except ConnectRefused as exc:
                ending = Ending(Cause.CONNECT_REFUSED, detail=str(exc))
            except UpgradeRefused as exc:
                ending = Ending(Cause.UPGRADE_REFUSED, detail=f"HTTP {exc.status}")
            except HttpStatusError as exc:
                ending = Ending(Cause.TOKEN_REFUSED, detail=f"HTTP {exc.status}")
            except ConnectFailed as exc:
                ending = Ending(Cause.CONNECT_FAILED, detail=exc.reason)
            except TargetProtocolError as exc:
                # An RFC 6455 violation is a bad frame too, in the phase it came in.
                self._bad(exc.kind, _frame_phase(lc, t.now(), self.settings.just_after_auth_s))
                ending = Ending(Cause.PROTOCOL_ERROR, exc.code, exc.reason, exc.initiator,
                                f"{exc.kind}: {exc.violation}")
            except ConnectionEnded as exc:
                ending = Ending(Cause.CLOSED, exc.code, exc.reason, exc.initiator,
                                refused=self._refused, expired=self._expired)
        except BaseException as failure:
            # Not ours to swallow: record the end, then let it go on.
            stopping = not isinstance(failure, Exception)
            cause = Cause.STOPPED if stopping else Cause.HARNESS_ERROR
            ending = None
            left = attempt.left  # stopped mid-upgrade: how we left
            try:
                if ws is None and isinstance(left, UpgradeRefused):
                    ending = Ending(Cause.UPGRADE_REFUSED, detail=f"HTTP {left.status}")
                elif ws is None and isinstance(left, ConnectionEnded):
                    ending = Ending(Cause.CLOSED if left.initiator == "server" else cause,
                                    left.code, left.reason, left.initiator)
                else:
                    if not stopping:
                        log_harness_error(failure)
                    ending = self._close(ws, cause, 1001 if stopping else 1011,
                                         "harness stopping" if stopping else "harness error", wait=stopping,
                                         detail="" if stopping else _harness_detail(failure),
                                         answered=partial(self._answered_late, pings=self._pings, acks=self._acks))
                    if stopping and self._late_auth_ok and lc.state is State.AUTHENTICATING:
                        # The gateway's auth_ok was on its way when the stop came; read
                        # while we closed, it authenticated the session, as the gateway
                        # counts it (no latency sample: it was read late, by our doing).
                        lc.step(Step.AUTH_OK, self.transport.now())
                        rec.session_authenticated(expected_drop(behaviour))
            finally:
                if ending is None:
                    # Killed again during the close's I/O: still exactly one end.
                    ending = _interrupted_close(ws, cause)
                self._finish(lc, ending, rec, behaviour)
            raise
        result = self._finish(lc, ending, rec, behaviour)
        return result, grant, end_at

    def _finish(self, lc: Lifecycle, ending: Ending, rec: Recorder, behaviour: Behaviour) -> Result:
        t = self.transport
        now = t.now()
        if lc.state is lc.state.NEW:
            lc.step(Step.BEGIN, now)
        result = lc.end(ending, now, self.settings.just_after_auth_s)
        self.live.open -= 1
        acks, pings = self._acks, self._pings
        if acks:  # sent, and neither answered, refused nor expired when the session ended
            rec.messages_in_flight += len(acks)
        if pings:  # sent, and neither answered, refused nor missed
            rec.pings_in_flight += len(pings)
        self._acks = self._pings = NONE_PENDING
        close = None
        if ending.code is not None:
            close = (ending.code, ending.reason, ending.initiator or "none")
        established = lc.established_s(now)
        detail = ending.detail or (f"close {ending.code}" if ending.code is not None else "")
        self.recorder.session_ended(result, established, close, detail,
                                    expected_drop(behaviour),
                                    expected=result.outcome.value in behaviour.expects)
        ok = result.outcome.value in ("closed_normally", "stopped_by_harness")
        if not ok:
            # Locust's row names only what loadkit names; what the target said is a detail.
            where = f"{result.outcome.value} in {result.phase.value}"
            how = ended_label(ending.code, ending.initiator) if ending.code is not None else ending.cause.value
            said = ending.detail or ending.reason
            if said:
                rec.note_detail(detail_text(where, said))
            self.report("session", (now - lc.started_at) * 1000.0, SessionEnded(f"{where}: {how}"), 0)
        else:
            self.report("session", (now - lc.started_at) * 1000.0, None, 0)
        return result
