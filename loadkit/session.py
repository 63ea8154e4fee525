"""Drive one guest through its lifecycle over a transport.

This is where the pure layers meet I/O, without owning any: the transport
does the waiting, the profile makes and reads frames, ``Lifecycle`` keeps
the state and classifies the end, the ``Recorder`` counts. The driver makes
no Locust calls either: phase timings go to a ``report`` callback that the
Locust glue points at ``events.request``.

One greenlet per guest does everything: it computes the next deadline
(keepalive due, message due, pong overdue, session over) and blocks in
``recv`` until then, so a guest costs one socket and one greenlet.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from loadkit.connection import Connection, Transport
from loadkit.errors import (
    ConnectFailed,
    ConnectionEnded,
    ConnectRefused,
    HttpStatusError,
    TargetProtocolError,
    UpgradeRefused,
)
from loadkit.failures import Failure, detail_text, ended_label, label
from loadkit.lifecycle import Cause, Ending, Lifecycle, Outcome, Result, Step
from loadkit.metrics.recorder import HARNESS_LAG, HARNESS_WAIT, Recorder
from loadkit.protocol.base import (
    BINARY_FRAME,
    INVALID_UTF8,
    UNMATCHED_ANSWER,
    BinaryFrame,
    EventKind,
    GoodbyeFlow,
    Profile,
    ServerEvent,
    Taken,
    TokenGrant,
    expects,
    goodbye_flow,
    is_utf8,
    reply_refs,
)
from loadkit.settings import Behaviour, HarnessSettings, backoff
from loadkit.streams import Rng

logger = logging.getLogger("loadkit")

#: ``report(name, response_time_ms, error_or_None, response_length)``
Report = Callable[[str, float, BaseException | None, int], None]

_E = EventKind

#: The bad-frame kind of an event a profile marked MALFORMED or UNKNOWN without naming one.
_UNNAMED_BAD = {_E.MALFORMED: "not_json", _E.UNKNOWN: "unknown_type"}
#: Close code when a bad frame ends the session (RFC 6455 §7.4.1): a binary frame
#: where text was agreed is "unsupported data"; text that is no frame of the
#: protocol is "invalid payload"; a readable frame that breaks the contract, "policy".
_FATAL_CLOSE = {BINARY_FRAME: 1003, "not_json": 1007, "not_object": 1007, "too_deep": 1007}
#: How many answered-elsewhere refs (expired or refused requests) a session remembers,
#: so a late answer to one of them is not taken for an answer to nothing.
_GONE_REFS = 256
#: How long a sent message's ack (and the agent reply it may get) stays
#: pending. After that the entry expires: an ack that never came counts as
#: ``messages.unanswered``; a reply that never came is simply dropped (agents
#: need not answer every message). This bounds a session's state: without it
#: a target whose agents answer some messages only grew ~1,000 entries per
#: guest-hour. A late answer to an expired message is still recognised.
PENDING_ANSWER_S = 60.0
_ABSENT: Any = object()
#: Answers to the auth frame that end auth at once as auth_refused.
_AUTH_ENDERS = frozenset({_E.AUTH_REFUSED, _E.ERROR, _E.RATE_LIMITED, _E.SESSION_ENDED, _E.SESSION_EXPIRED})


def _no_report(name: str, ms: float, error: BaseException | None, length: int) -> None:
    pass


class LiveSessions:
    """The open-sessions gauge, kept apart from the recorder's counters.

    It is the independent side of the accounting check
    ``started == ended + open``.
    """

    __slots__ = ("open", "stopping")

    def __init__(self) -> None:
        self.open = 0
        #: the run is stopping: timers that fire late now (Locust's stop
        #: itself holds the loop for tens of ms) are not the run's lag
        self.stopping = False


class SessionDriver:
    def __init__(self, transport: Transport, profile: Profile, recorder: Recorder,
                 settings: HarnessSettings, base_url: str, live: LiveSessions,
                 report: Report = _no_report, rng: Rng | None = None) -> None:
        self.transport = transport
        self.profile = profile
        self.recorder = recorder
        self.settings = settings
        self.base_url = base_url
        self.live = live
        self._sink = report
        self.rng: Rng = rng or random.Random()
        self._dropped_at: float | None = None
        self._refused = False
        self._expired = False
        self._expects = expects(profile)
        #: this session has had a bad frame already (for ``Recorder.bad_sessions``)
        self._bad_seen = False

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

    def _recovered(self, auth_at: float) -> None:
        """A reconnect got through auth: count it and its time to recover."""
        dropped_at, self._dropped_at = self._dropped_at, None
        if dropped_at is None:
            return
        rec = self.recorder
        rec.reconnect_successes += 1
        recovered = auth_at - dropped_at
        rec.recover.record(int(recovered * 1e6))
        self.report("reconnect", recovered * 1000.0, None, 0)

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
        self._refused = False
        self._expired = False
        self._bad_seen = False
        try:
            try:
                grant = self._token(lc, grant, guest_no)
                ws = self._connect(lc, grant)
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
        except BaseException:
            # Not ours to swallow: record the end, then let it go on.
            exc = sys.exc_info()[1]
            stopping = not isinstance(exc, Exception)
            cause = Cause.STOPPED if stopping else Cause.HARNESS_ERROR
            ending = None
            left = getattr(exc, "loadkit_close", None)  # stopped mid-upgrade: how we left
            try:
                if ws is None and isinstance(left, UpgradeRefused):
                    ending = Ending(Cause.UPGRADE_REFUSED, detail=f"HTTP {left.status}")
                elif ws is None and left is not None:
                    ending = Ending(Cause.CLOSED if left.initiator == "server" else cause,
                                    left.code, left.reason, left.initiator)
                else:
                    if not stopping:
                        log_harness_error(exc)
                    ending = self._close(ws, cause, 1001 if stopping else 1011,
                                         "harness stopping" if stopping else "harness error", wait=stopping,
                                         detail="" if stopping else _harness_detail(exc))
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
        close = None
        if ending.code is not None:
            close = (ending.code, ending.reason, ending.initiator or "none")
        established = lc.established_s(now)
        detail = ending.detail or (f"close {ending.code}" if ending.code is not None else "")
        self.recorder.session_ended(result, established, close, detail,
                                    behaviour.name if behaviour.drop_expected else None)
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

    def report(self, name: str, ms: float, error: BaseException | None, length: int) -> None:
        """A phase timing for Locust; a failure's text drawn from a bounded vocabulary.

        What the target said (a close reason, a header value) would make a
        row of Locust's failure table per value; it goes to the report's
        ``failure_details`` (capped) instead.
        """
        if error is not None and not isinstance(error, Failure):
            text, detail = label(error)
            if detail:
                self.recorder.note_detail(detail_text(f"{name}: {text}", detail))
            error = Failure(text)
        self._sink(name, ms, error, length)

    # -- phases ----------------------------------------------------------------

    def _token(self, lc: Lifecycle, grant: TokenGrant | None, guest_no: int) -> TokenGrant:
        t = self.transport
        if grant is not None:
            lc.step(Step.RESUME, t.now())
            return grant
        lc.step(Step.BEGIN, t.now())
        request = self.profile.token_request(self.base_url, guest_no)
        if request is None:
            grant = self.profile.token_grant(None, b"", guest_no)
        else:
            t0 = t.now()
            try:
                answer = t.http(request)
            except (ConnectRefused, ConnectFailed) as exc:
                self.report("token", (t.now() - t0) * 1000.0, exc, 0)
                raise
            # The target's latency starts when the request went on the wire;
            # the wait before that (a connection slot, the resolver) is the harness's.
            self.recorder.observe(HARNESS_WAIT, int(answer.waited_s * 1e6))
            wire_ms = answer.wire_s * 1000.0
            if not 200 <= answer.status < 300:
                refused = HttpStatusError(answer.status, answer.body)
                self.report("token", wire_ms, refused, len(answer.body))
                raise refused
            try:
                grant = self.profile.token_grant(answer.status, answer.body, guest_no)
            except ValueError as exc:  # the profile could not read the answer: the target's body
                self.report("token", wire_ms, exc, len(answer.body))
                raise HttpStatusError(answer.status, b"malformed token response") from None
            except HttpStatusError as exc:
                self.report("token", wire_ms, exc, len(answer.body))
                raise
            self.recorder.observe("token", int(answer.wire_s * 1e6))
            self.report("token", wire_ms, None, len(answer.body))
        lc.step(Step.TOKEN_OK, t.now())
        return grant

    def _connect(self, lc: Lifecycle, grant: TokenGrant) -> Connection:
        t = self.transport
        url = self.profile.websocket_url(self.base_url, grant)
        headers = self.profile.handshake_headers(self.base_url)
        t0 = t.now()
        try:
            ws = t.connect(url, headers, self.settings.connect_timeout_s)
        except (ConnectRefused, ConnectFailed, UpgradeRefused) as exc:
            self.report("connect", (t.now() - t0) * 1000.0, exc, 0)
            raise
        t1 = t.now()
        self.recorder.observe("connect", int((t1 - t0) * 1e6))
        self.report("connect", (t1 - t0) * 1000.0, None, 0)
        lc.step(Step.OPENED, t1)
        return ws

    def _authenticate(self, lc: Lifecycle, ws: Connection, grant: TokenGrant, behaviour: Behaviour) -> Ending | None:
        """Send auth, wait for the answer. None when authenticated, else how it ended."""
        t = self.transport
        resumed = lc.resumed
        frame = self.profile.auth_frame(grant, behaviour.auth_style)
        t0 = t.now()
        if frame is not None:
            try:
                ws.send(frame)
            except ConnectionEnded as exc:
                self.report("auth", (t.now() - t0) * 1000.0, exc, 0)
                raise
        deadline = t0 + self.settings.auth_timeout_s
        refusal: str | None = None  # an explicit refusal came: what it said
        while True:
            try:
                data = ws.recv(deadline - t.now())
            except ConnectionEnded as exc:
                self.report("auth", (t.now() - t0) * 1000.0, exc, 0)
                raise
            if data is None and refusal is not None:  # refused, and the server did not close: we do
                ending = self._close(ws, Cause.AUTH_REFUSED, 1000, "", wait=True, detail=refusal)
                self.report("auth", (t.now() - t0) * 1000.0, Failure("auth refused in band (auth_refused)"), 0)
                return ending
            if data is None:
                ending = self._close(ws, Cause.AUTH_TIMEOUT, 1000, "auth timeout", wait=True,
                                     detail=f"no auth answer within {self.settings.auth_timeout_s:g} s")
                self.report("auth", (t.now() - t0) * 1000.0, TimeoutError(ending.detail), 0)
                return ending
            ev = self._event(data)
            kind = ev.kind
            if ev.bad or kind in self._expects.match:  # nothing was sent yet that it could answer
                bad = ev.bad or UNMATCHED_ANSWER
                if self._bad(bad, "during_auth"):
                    ending = self._fatal(ws, bad, ev.detail)
                    self.report("auth", (t.now() - t0) * 1000.0, SessionEnded(f"bad frame: {bad}"), 0)
                    return ending
                continue
            if kind is _E.AUTH_REFUSED and refusal is None:
                # An explicit refusal: the protocol's close follows; give it close_timeout
                # (not the auth timeout), and record the close the server sends.
                self._note(ev, "during_auth")
                refusal = f"auth_refused {ev.code}: {ev.detail}"
                deadline = min(deadline, t.now() + self.settings.close_timeout_s)
                continue
            if kind in _AUTH_ENDERS:
                # An in-band refusal ({"code":400,"body":"Deployment not found"}) or a frame that
                # ends the session answers the auth frame: waiting for the auth timeout would
                # report a refusal as a timeout.
                self._note(ev, "during_auth")
                self._refused = True
                said = f"{kind.name.lower()} {ev.code if ev.code is not None else ''}".strip()
                ending = self._close(ws, Cause.AUTH_REFUSED, 1000, "", wait=True,
                                     detail=f"{said}: {ev.detail}" if ev.detail else said)
                self.report("auth", (t.now() - t0) * 1000.0, Failure(f"auth refused in band ({kind.name.lower()})"), 0)
                return ending
            if kind is _E.AUTH_OK:
                t1 = self._arrival(ws)
                if resumed and ev.fields.get("newSession") is True:
                    # A reconnect that reused its grant should find its session.
                    self.recorder.not_resumed += 1
                lc.step(Step.AUTH_OK, t1)
                rec = self.recorder
                rec.session_authenticated(behaviour.name if behaviour.drop_expected else None)
                rec.observe("auth", int((t1 - t0) * 1e6))
                self.report("auth", (t1 - t0) * 1000.0, None, len(data))
                self._recovered(t1)
                return None
            self._note(ev)

    # -- frames in -------------------------------------------------------------

    def _event(self, data: bytes) -> ServerEvent:
        """What a frame means; a bad frame comes back with ``bad`` set (not yet counted)."""
        if type(data) is BinaryFrame and self._expects.frames == "text":
            return ServerEvent(_E.MALFORMED, detail="binary frame", bad=BINARY_FRAME)
        ev = self.profile.classify(data)
        if not ev.bad and (ev.kind is _E.MALFORMED or ev.kind is _E.UNKNOWN):
            ev.bad = _UNNAMED_BAD[ev.kind]
        return ev

    def _arrival(self, ws: Connection) -> float:
        """When the frame just returned by ``recv`` was read off the socket.

        Frames of one read are handed out one by one; the time a later one
        was processed says how busy the harness was, not how fast the
        target answered.
        """
        at = ws.arrived_at
        return at if at is not None else self.transport.now()

    def _bad(self, kind: str, phase: str) -> bool:
        """Count one bad frame; True when its kind ends the session."""
        rec = self.recorder
        rec.bad_frames[(kind, phase)] += 1
        if not self._bad_seen:
            self._bad_seen = True
            rec.bad_sessions += 1
        return kind in self._expects.fatal

    def _fatal(self, ws: Connection, kind: str, detail: str) -> Ending:
        """End the session over a bad frame the profile will not tolerate."""
        return self._close(ws, Cause.PROTOCOL_ERROR, _FATAL_CLOSE.get(kind, 1008), f"bad frame: {kind}",
                           wait=True, detail=f"bad frame: {kind}" + (f" ({detail})" if detail else ""))

    def _note(self, ev: Any, phase: str = "closing") -> None:
        """Count what a frame says that the current phase doesn't act on."""
        kind = ev.kind
        rec = self.recorder
        if ev.bad:
            self._bad(ev.bad, phase)
        elif kind is _E.AGENT_MESSAGE:
            rec.agent_messages += 1
        elif kind is _E.AUTH_REFUSED:
            self._refused = True
            rec.errors[str(ev.code)] += 1
        elif kind is _E.ERROR or kind is _E.RATE_LIMITED:
            rec.errors[str(ev.code)] += 1
        elif kind is _E.SESSION_EXPIRED:
            self._expired = True

    def _established(self, lc: Lifecycle, ws: Connection, grant: TokenGrant, behaviour: Behaviour,
                     end_at: float) -> Ending:
        t = self.transport
        s = self.settings
        profile = self.profile
        rng = self.rng
        rec = self.recorder
        report = self.report
        now = t.now()
        keepalive = behaviour.keepalive
        interval = behaviour.message_interval or s.message_interval
        next_ping = now + s.keepalive_s if keepalive else float("inf")
        next_msg = now + rng.uniform(*interval) if behaviour.messages else float("inf")
        pings: dict[Any, float] = {}
        acks: dict[Any, float] = {}
        replies: dict[Any, float] = {}
        track_replies = reply_refs(profile)  # else nothing would ever pop them
        #: what each answer closes: its pending sends and its latency phase
        waiting = {_E.ACK: (acks, "message"), _E.PONG: (pings, "ping"), _E.AGENT_MESSAGE: (replies, "reply")}
        match = self._expects.match
        #: refs of requests that left ``pending`` unanswered (expired, refused), oldest first:
        #: a late answer to one of them answers something we did send
        gone: dict[Any, None] = {}
        #: without reply refs, an agent message answers the guest's last message (once)
        last_msg_at: float | None = None
        #: when the server said the session expired (None: it has not)
        expired_at: float | None = None
        auth_at = lc.auth_at if lc.auth_at is not None else now
        seq = 0
        misses = 0
        last_rx = now  # for "time since the last server frame" on a keepalive timeout
        text = ("hello from loadkit " * (1 + s.message_chars // 19))[: s.message_chars]
        while True:
            now = t.now()
            if now >= end_at:
                if expired_at is not None:  # told the session expired, and the socket stayed open
                    return self._close(ws, Cause.SESSION_EXPIRED, 1000, "", wait=True,
                                       detail="session expired, socket left open")
                flow = goodbye_flow(profile, grant)
                if flow is not None:
                    return self._goodbye(lc, ws, flow)
                for frame in profile.goodbye_frames(grant):
                    ws.send(frame)
                return self._close(ws, Cause.SESSION_DONE, 1000, "", wait=True)
            if now >= next_ping:
                seq += 1
                frame, ref = profile.ping_frame(seq, grant)
                ws.send(frame)
                pings[ref] = now
                next_ping = now + s.keepalive_s
            if pings:
                oldest = min(pings.values())
                if now - oldest >= s.pong_timeout_s:
                    for ref in [r for r, ts in pings.items() if now - ts >= s.pong_timeout_s]:
                        del pings[ref]
                        _forget(gone, ref)
                        rec.missed_pongs += 1
                        misses += 1
                    if misses >= s.keepalive_misses:
                        rec.silence.record(int((now - last_rx) * 1e6))
                        return self._close(ws, Cause.KEEPALIVE_TIMEOUT, 1001, "keepalive timeout",
                                           wait=False, detail=f"no pong within {s.pong_timeout_s:g} s")
                pong_due = min(pings.values()) + s.pong_timeout_s if pings else float("inf")
            else:
                pong_due = float("inf")
            if acks or replies:
                _expire(acks, replies, gone, now - PENDING_ANSWER_S, rec)
            if now >= next_msg:
                seq += 1
                frame, ref = profile.message_frame(seq, text, grant)
                ws.send(frame)
                rec.messages_sent += 1
                acks[ref] = now
                if track_replies:
                    replies[ref] = now
                else:
                    last_msg_at = now
                next_msg = now + rng.uniform(*interval)
            wait = min(end_at, next_ping, next_msg, pong_due) - now
            data = ws.recv(wait if wait > 0 else 0)
            if data is None:
                if wait > 0 and not self.live.stopping:  # a timer wake-up: how late it came is the harness's lag
                    rec.observe(HARNESS_LAG, int((t.now() - now - wait) * 1e6))
                continue
            last_rx = self._arrival(ws)
            ev = self._event(data)
            kind = ev.kind
            if ev.bad:
                phase = "just_after_auth" if last_rx - auth_at <= s.just_after_auth_s else "established"
                if self._bad(ev.bad, phase):
                    return self._fatal(ws, ev.bad, ev.detail)
                continue
            answered = waiting.get(kind)
            if answered is not None:  # an ack, a pong or the agent's reply: a round trip
                pending, phase = answered
                ref = ev.ref
                try:
                    sent = pending.pop(ref, None)
                except TypeError:  # a list or an object as an id: it answers nothing we sent
                    sent, ref = None, repr(ref)
                if sent is not None:
                    if kind is _E.PONG:
                        misses = 0
                    elif kind is _E.ACK:
                        rec.messages_answered += 1
                    dt = last_rx - sent
                    rec.observe(phase, int(dt * 1e6))
                    report(phase, dt * 1000.0, None, len(data))
                elif kind in match and gone.pop(ref, _ABSENT) is _ABSENT:  # an answer to nothing we sent
                    where = "just_after_auth" if last_rx - auth_at <= s.just_after_auth_s else "established"
                    if self._bad(UNMATCHED_ANSWER, where):
                        return self._fatal(ws, UNMATCHED_ANSWER, f"{kind.name.lower()} {str(ref)[:40]}")
                    continue
                if kind is _E.AGENT_MESSAGE:
                    rec.agent_messages += 1
                    if last_msg_at is not None:
                        dt = last_rx - last_msg_at
                        last_msg_at = None
                        rec.observe("reply", int(dt * 1e6))
                        report("reply", dt * 1000.0, None, len(data))
            elif kind is _E.SESSION_ENDED:  # e.g. ConnectionClosedEvent: the server is done with us
                return self._close(ws, Cause.SERVER_ENDED, 1000, "", wait=True, detail=ev.detail or "session ended")
            elif kind is _E.SESSION_EXPIRED:
                # Expired: send nothing more (every frame would be refused 4006), give the
                # server its close timeout to close (the guest protocol's 4006), then close.
                self._expired = True
                if ev.code is not None:
                    rec.errors[str(ev.code)] += 1
                if expired_at is None:
                    expired_at = t.now()
                    end_at = min(end_at, expired_at + s.close_timeout_s)
                    next_ping = next_msg = float("inf")
                    pings.clear()
            elif kind is _E.RATE_LIMITED:
                rec.errors["4029"] += 1
                ref = ev.ref
                try:
                    if acks.pop(ref, None) is not None:  # refused: no ack and no reply will come
                        _forget(gone, ref)
                    replies.pop(ref, None)
                except TypeError:
                    pass
                if behaviour.honour_retry_after and ev.retry_after:
                    next_msg = max(next_msg, t.now() + ev.retry_after)
            else:
                self._note(ev)

    def _goodbye(self, lc: Lifecycle, ws: Connection, flow: GoodbyeFlow) -> Ending:
        """Say goodbye and wait (at most ``flow.timeout_s``) until the target confirms it.

        A goodbye the target did not confirm (no answer in time, a refusal,
        a session-ending frame or the connection lost before the answers)
        ends as ``goodbye_incomplete``: the target may still hold the guest's
        conversation, so it is neither ``closed_normally`` nor a drop. A
        refusal the flow retries (429 with ``retryAfter``) is the target's
        error and counted as such; answers caused by the goodbye itself are not.
        """
        t = self.transport
        rec = self.recorder
        now = t.now()
        lc.step(Step.GOODBYE, now)
        deadline = now + flow.timeout_s
        try:
            while not flow.done and not flow.failed:
                now = t.now()
                if now >= deadline:
                    break
                for frame in flow.frames(now):
                    ws.send(frame)
                wait = min(deadline, flow.next_at) - now
                data = ws.recv(wait if wait > 0 else 0)
                if data is None:
                    continue
                ev = self._event(data)
                if ev.bad:
                    if self._bad(ev.bad, "closing"):
                        return self._fatal(ws, ev.bad, ev.detail)
                    continue
                taken = flow.feed(ev, self._arrival(ws))
                if taken is Taken.REFUSAL:
                    rec.errors[str(ev.code)] += 1
                elif taken is Taken.NOT_MINE:
                    if ev.kind is _E.SESSION_ENDED or ev.kind is _E.SESSION_EXPIRED:
                        self._note(ev)
                        said = ev.detail or ev.kind.name.lower()
                        return self._close(ws, Cause.GOODBYE_INCOMPLETE, 1000, "", wait=True,
                                           detail=f"goodbye cut short by {said}, waiting for {flow.waiting_for()}")
                    self._note(ev)
        except TargetProtocolError:
            raise
        except ConnectionEnded as exc:
            if exc.code == 1000 and exc.initiator == "server" and flow.server_close_ends_it():
                return Ending(Cause.SESSION_DONE, exc.code, exc.reason, exc.initiator)
            return Ending(Cause.GOODBYE_INCOMPLETE, exc.code, exc.reason, exc.initiator,
                          f"connection closed mid-goodbye, waiting for {flow.waiting_for()}")
        if flow.done:
            ending = self._close(ws, Cause.SESSION_DONE, 1000, "", wait=True)
            if ending.cause is Cause.CLOSED and ending.code == 1000 and ending.initiator == "server":
                # The target closed as soon as it had confirmed the goodbye: the protocol's own end.
                return Ending(Cause.SESSION_DONE, ending.code, ending.reason, ending.initiator)
            return ending
        why = flow.failed or f"no {flow.waiting_for()} within {flow.timeout_s:g} s"
        return self._close(ws, Cause.GOODBYE_INCOMPLETE, 1000, "", wait=True, detail=f"goodbye incomplete: {why}")

    def _close(self, ws: Connection | None, cause: Cause, code: int, reason: str, wait: bool,
               detail: str = "") -> Ending:
        """Close from our side and say how it really ended (the server may have been first)."""
        if ws is None:
            return Ending(cause, detail=detail)
        already = ws.closed
        try:
            ended = ws.close(code, reason, wait=wait)
        except Exception as exc:
            # The transport's close reports every socket failure as how the
            # connection ended; an exception is a harness bug. Never record
            # a close that may not have been on the wire.
            log_harness_error(exc)
            _abort_quietly(ws)
            return Ending(Cause.HARNESS_ERROR, detail=_harness_detail(exc))
        for data in ws.leftover:  # what the server sent before our close reached it
            if type(data) is not BinaryFrame and not data.isascii() and not is_utf8(data):
                self._bad(INVALID_UTF8, "closing")
            else:
                self._note(self._event(data))
        if isinstance(ended, TargetProtocolError) and not already and cause is not Cause.HARNESS_ERROR:
            # The target broke the protocol while we were closing: whatever we
            # were closing for, that is how it ended. The close code is the one
            # on the wire (ours), not the violation's.
            self._bad(ended.kind, "closing")
            return Ending(Cause.PROTOCOL_ERROR, ended.code, ended.reason, ended.initiator,
                          f"{ended.kind}: {ended.violation}")
        if ended.initiator != "client":
            # The server's close (or a lost connection) came first: that is
            # what happened, whatever we meant to do.
            # A bug stays visible whatever the wire says, and so does a bad frame we closed over.
            # So does a goodbye the target never confirmed: its close does not confirm it.
            if cause is Cause.HARNESS_ERROR or cause is Cause.PROTOCOL_ERROR or cause is Cause.GOODBYE_INCOMPLETE:
                return Ending(cause, ended.code, ended.reason, ended.initiator, detail)
            return Ending(Cause.CLOSED, ended.code, ended.reason, ended.initiator,
                          refused=self._refused, expired=self._expired)
        return Ending(cause, ended.code, ended.reason, ended.initiator, detail)


_logged_sites: set[tuple[str, str, int]] = set()


def log_harness_error(exc: BaseException) -> None:
    """A harness bug: log its traceback once per distinct site (type, file, line), never per session."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    site = (type(exc).__name__, tb.tb_frame.f_code.co_filename if tb else "?", tb.tb_lineno if tb else 0)
    if site in _logged_sites:
        return
    _logged_sites.add(site)
    logger.error("loadkit: harness error %s at %s:%d (a loadkit bug, counted as harness_error; "
                 "logged once per site)", site[0], site[1], site[2], exc_info=exc)


def _harness_detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _abort_quietly(ws: Any) -> None:
    try:
        ws.abort()
    except Exception:  # releasing the socket is all that is left to do
        pass


def _interrupted_close(ws: Any, cause: Cause) -> Ending:
    """How a session ended whose close was cut short: a close counts only if its frame left."""
    proto = getattr(ws, "_proto", None)
    sent = getattr(proto, "close_sent", None)
    _abort_quietly(ws)
    if sent is not None:
        return Ending(cause, sent.code, sent.reason, "client")
    return Ending(cause)


def _expire(acks: dict[Any, float], replies: dict[Any, float], gone: dict[Any, None], before: float,
            rec: Recorder) -> None:
    """Drop pending answers sent before ``before``, oldest first (dicts keep send order)."""
    while acks:
        ref, sent = next(iter(acks.items()))
        if sent > before:
            break
        del acks[ref]
        _forget(gone, ref)
        rec.messages_unanswered += 1
    while replies:
        ref, sent = next(iter(replies.items()))
        if sent > before:
            break
        del replies[ref]
        _forget(gone, ref)


def _forget(gone: dict[Any, None], ref: Any) -> None:
    """Remember ``ref`` as sent and no longer awaited (bounded: oldest forgotten first)."""
    gone[ref] = None
    if len(gone) > _GONE_REFS:
        del gone[next(iter(gone))]


def _frame_phase(lc: Lifecycle, now: float, just_after_auth_s: float) -> str:
    """The phase a frame arrived in, as ``Recorder.bad_frames`` names it."""
    state = lc.state.value
    if state in ("closing", "ended"):
        return "closing"
    if lc.auth_at is None:
        return "during_auth"
    return "just_after_auth" if now - lc.auth_at <= just_after_auth_s else "established"


class SessionEnded(Failure):
    """Failure text for Locust's table when a session did not end normally."""
