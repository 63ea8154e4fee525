"""What every part of the session driver shares: its state, frames in, and closing.

Why a base of its own: the driver's phases (``phases.py``: token, connect,
auth), its established-phase loop and goodbye (``established.py``) and its
session bookkeeping (``driver.py``) all read frames the same way (a bad frame
is classified and counted once, by kind and phase) and close the same way
(a close reports how the connection really ended, the server may have been
first). That shared vocabulary lives here, with the driver's state.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from loadkit.connection import Connection, Transport
from loadkit.errors import (
    TargetProtocolError,
)
from loadkit.failures import Failure, detail_text, label
from loadkit.lifecycle import DROP_OUTCOMES, Cause, Ending, Lifecycle
from loadkit.metrics.recorder import Recorder
from loadkit.protocol.base import (
    BINARY_FRAME,
    INVALID_UTF8,
    UNMATCHED_ANSWER,
    BinaryFrame,
    EventKind,
    Profile,
    ServerEvent,
    expects,
    is_utf8,
)
from loadkit.settings import Behaviour, HarnessSettings
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


def expected_drop(behaviour: Behaviour) -> str | None:
    """The behaviour's name if it is meant to be dropped (a drop among its ``expects``), else None.

    Derived, not declared: what a behaviour expects is said once, in
    ``loadkit.settings.BEHAVIOURS``; the recorder counts such guests' drops apart.
    """
    return behaviour.name if any(o in DROP_OUTCOMES for o in behaviour.expects) else None


def _no_report(name: str, ms: float, error: BaseException | None, length: int) -> None:
    pass


#: The tables of sends awaiting an answer until a session sends its first
#: message: one shared, always empty dict instead of one per session (an idle
#: guest sends no message). It is only ever read; a session makes its own
#: dicts before it stores anything.
NONE_PENDING: dict[Any, Any] = {}


class LiveSessions:
    """The open-sessions gauge, kept apart from the recorder's counters.

    It is the independent side of the accounting check
    ``started == ended + open``.
    """

    __slots__ = ("open", "stopping")

    def __init__(self) -> None:
        self.open = 0
        #: the run is stopping (Locust's test_stopping, loadkit.locust.lag):
        #: its stop holds the loop for tens of ms and closes every session at
        #: once, so timers that fire late now are not the run's lag, and an
        #: answer read now is not timed (a token, connect, auth, ack, pong or
        #: reply; it still counts): it waited for the harness's stop, not for
        #: the target. A 4-minute run of config/soak.toml timed the answers
        #: of its stop's 0.8 s at message p50 17 ms, against 0.9 ms in the
        #: minute before.
        self.stopping = False


class SessionBase:
    """The driver's state and the frame and close handling every phase uses.

    One per Locust user, for its life: slots, not a ``__dict__`` (the
    subclasses add none), because an idle guest's memory is the product's
    capacity (tests/test_session_memory.py keeps it so).
    """

    __slots__ = ("transport", "profile", "recorder", "settings", "base_url", "live", "_sink", "rng",
                 "_dropped_at", "_refused", "_expired", "_late_auth_ok", "_expects", "_bad_seen", "_acks",
                 "_pings")

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
        #: an auth_ok read while closing (a stop caught the session between the gateway's answer and our read)
        self._late_auth_ok = False
        self._expects = expects(profile)
        #: this session has had a bad frame already (for ``Recorder.bad_sessions``)
        self._bad_seen = False
        #: the session's messages awaiting their ack (the established loop's table, once it sends
        #: one): what is left in it when the session ends is ``messages_in_flight``
        self._acks: dict[Any, float] = NONE_PENDING
        #: its pings awaiting their pong (the established loop's table): what is left in it
        #: when the session ends is ``pings_in_flight``
        self._pings: dict[Any, float] = NONE_PENDING

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

    def _timed(self, phase: str, seconds: float, length: int) -> None:
        """A success's latency, in loadkit's histogram and Locust's table; only counted once the run is stopping.

        The one place a phase's latency is recorded, so the stop rule
        (``LiveSessions.stopping``) holds for every phase alike.
        """
        if self.live.stopping:
            self.recorder.untimed[phase] += 1
            return
        self.recorder.observe(phase, int(seconds * 1e6))
        self._sink(phase, seconds * 1000.0, None, length)  # a success needs no failure text: straight to Locust

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
        elif kind is _E.AUTH_OK:
            self._late_auth_ok = True

    # -- closing -----------------------------------------------------------------

    def _close(self, ws: Connection | None, cause: Cause, code: int, reason: str, wait: bool,
               detail: str = "", unmatched: Callable[[ServerEvent], bool] | None = None,
               answered: Callable[[ServerEvent, int, float], bool] | None = None) -> Ending:
        """Close from our side and say how it really ended (the server may have been first).

        Among the frames that arrive while closing (the established phase
        knows what it sent), ``answered`` records an answer to a send still
        pending (a pong or an ack on its way when the session ended: a round
        trip like any other, timed from when it was read) and ``unmatched``
        tells an answer to nothing the session sent; that one is counted as
        ``unmatched_answer`` there, as anywhere.
        """
        if ws is None:
            return Ending(cause, detail=detail)
        already = ws.closed
        try:
            ended = ws.close(code, reason, wait=wait)
        except Exception as exc:  # noqa: BLE001 - any exception from close is a harness bug, recorded as one
            # The transport's close reports every socket failure as how the
            # connection ended; an exception is a harness bug. Never record
            # a close that may not have been on the wire.
            log_harness_error(exc)
            _abort_quietly(ws)
            return Ending(Cause.HARNESS_ERROR, detail=_harness_detail(exc))
        for data, at in ws.leftover:  # what the server sent before our close reached it
            if type(data) is not BinaryFrame and not data.isascii() and not is_utf8(data):
                self._bad(INVALID_UTF8, "closing")
            else:
                ev = self._event(data)
                if answered is not None and not ev.bad and answered(
                        ev, len(data), at if at is not None else self.transport.now()):
                    continue
                if unmatched is not None and not ev.bad and unmatched(ev):
                    self._bad(UNMATCHED_ANSWER, "closing")
                else:
                    self._note(ev)
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
    except Exception:  # noqa: BLE001 - releasing the socket is all that is left to do
        pass


def _interrupted_close(ws: Any, cause: Cause) -> Ending:
    """How a session ended whose close was cut short: a close counts only if its frame left."""
    proto = getattr(ws, "_proto", None)
    sent = getattr(proto, "close_sent", None)
    _abort_quietly(ws)
    if sent is not None:
        return Ending(cause, sent.code, sent.reason, "client")
    return Ending(cause)


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
