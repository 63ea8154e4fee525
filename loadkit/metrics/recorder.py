"""Everything loadkit counts about sessions, in one mergeable object.

The ``Recorder`` is a bag of counters and histograms with no clock and no
I/O. Hot-path methods do one or two dict updates. It is built for Locust's
delta-and-merge model: ``detach()`` hands back everything recorded since the
last call and starts afresh (workers ship that to the master; a single
process merges it into its running total), ``to_wire``/``from_wire`` cross a
process boundary, and ``merge`` adds exactly, so percentiles of the whole run
come from merged histograms, never from averaged percentiles.

The accounting invariant ``started == sum(ended) + open`` is checked
against an *independent* count: ``open`` comes from the live-session gauge
kept by the session driver (sessions begun and not yet ended), not from
this object, so a session counted twice or never ended breaks the equation
instead of hiding in a derived number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from loadkit.lifecycle import DROP_OUTCOMES, Result
from loadkit.metrics.histogram import Histogram

#: Latency series every report has, even when empty.
LATENCY_PHASES = ("token", "connect", "auth", "message", "ping", "reply")
#: The harness's own delays, kept beside the phases (same histograms, same
#: merge and wire format) but reported apart, under ``report["harness"]``:
#: time a token call waited inside the harness before it went on the wire
#: (a free connection, the resolver), and generator lag (a timer's wake-up
#: after it was due).
HARNESS_WAIT = "harness_wait"
HARNESS_LAG = "harness_lag"
HARNESS_SERIES = (HARNESS_WAIT, HARNESS_LAG)
#: Survival marks in seconds (``--survival-marks``).
DEFAULT_SURVIVAL_MARKS = (60, 300, 1800, 3600)


class Recorder:
    __slots__ = (
        "started", "authenticated", "ended", "close_codes", "latency", "recover",
        "errors", "bad_frames", "reconnect_attempts", "reconnect_successes",
        "missed_pongs", "silence", "not_resumed", "session_seconds", "survival_reached", "survival_died",
        "marks", "bad_sessions", "messages_sent", "messages_answered", "agent_messages",
    )

    def __init__(self, marks: Iterable[int] = DEFAULT_SURVIVAL_MARKS) -> None:
        self.marks = tuple(marks)
        self.started = 0
        self.authenticated = 0
        #: (outcome, phase) -> sessions
        self.ended: Counter[tuple[str, str]] = Counter()
        #: (phase, code, reason, initiator) -> sessions
        self.close_codes: Counter[tuple[str, int, str, str]] = Counter()
        self.latency: dict[str, Histogram] = {p: Histogram() for p in (*LATENCY_PHASES, *HARNESS_SERIES)}
        #: drop → authenticated again, µs
        self.recover = Histogram()
        #: error frames received, by code ("4029")
        self.errors: Counter[str] = Counter()
        #: frames from the target it should not have sent: (kind, phase) -> frames
        #: (kinds: loadkit.protocol.base.BAD_FRAME_KINDS)
        self.bad_frames: Counter[tuple[str, str]] = Counter()
        #: sessions that received at least one bad frame
        self.bad_sessions = 0
        #: chat messages sent, answered (their ack matched), and agent messages received
        self.messages_sent = 0
        self.messages_answered = 0
        self.agent_messages = 0
        self.reconnect_attempts = 0
        self.reconnect_successes = 0
        self.missed_pongs = 0
        #: reconnects that reused their grant but got a new session (``newSession: true``)
        self.not_resumed = 0
        #: on a keepalive timeout: time since the last frame from the server, µs
        self.silence = Histogram()
        #: authenticated seconds of ended sessions (for drops per session-hour)
        self.session_seconds = 0.0
        self.survival_reached: Counter[int] = Counter()
        self.survival_died: Counter[int] = Counter()

    # -- hot path --------------------------------------------------------------

    def observe(self, phase: str, value_us: int) -> None:
        self.latency[phase].record(value_us)

    def session_started(self) -> None:
        self.started += 1

    def session_authenticated(self) -> None:
        self.authenticated += 1

    def session_ended(self, result: Result, established_s: float,
                      close: tuple[int, str, str] | None) -> None:
        """Count one ended session: its outcome, its close code, its survival."""
        phase = result.phase.value
        self.ended[(result.outcome.value, phase)] += 1
        if close is not None:
            code, reason, initiator = close
            self.close_codes[(phase, code, reason, initiator)] += 1
        if result.authenticated:
            self.session_seconds += established_s
            drop = result.is_drop
            for mark in self.marks:
                if established_s >= mark:
                    self.survival_reached[mark] += 1
                elif drop:
                    self.survival_died[mark] += 1

    # -- derived -----------------------------------------------------------------

    @property
    def ended_total(self) -> int:
        return sum(self.ended.values())

    def outcomes(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (outcome, _phase), n in self.ended.items():
            out[outcome] += n
        return dict(sorted(out.items()))

    def bad_frame_count(self) -> int:
        return sum(self.bad_frames.values())

    def drops(self) -> int:
        return sum(
            n for (outcome, phase), n in self.ended.items()
            if outcome in DROP_OUTCOMES and phase in ("just_after_auth", "established")
        )

    # -- delta and merge -------------------------------------------------------

    def detach(self) -> Recorder:
        """Everything recorded since the last detach, as a new Recorder; self restarts empty."""
        old = Recorder(self.marks)
        for name in self.__slots__:
            setattr(old, name, getattr(self, name))
        self.__init__(self.marks)  # type: ignore[misc]
        return old

    def merge(self, other: Recorder) -> None:
        self.started += other.started
        self.authenticated += other.authenticated
        self.ended.update(other.ended)
        self.close_codes.update(other.close_codes)
        for phase, hist in other.latency.items():
            self.latency.setdefault(phase, Histogram()).merge(hist)
        self.recover.merge(other.recover)
        self.errors.update(other.errors)
        self.bad_frames.update(other.bad_frames)
        self.bad_sessions += other.bad_sessions
        self.messages_sent += other.messages_sent
        self.messages_answered += other.messages_answered
        self.agent_messages += other.agent_messages
        self.reconnect_attempts += other.reconnect_attempts
        self.reconnect_successes += other.reconnect_successes
        self.missed_pongs += other.missed_pongs
        self.not_resumed += other.not_resumed
        self.silence.merge(other.silence)
        self.session_seconds += other.session_seconds
        self.survival_reached.update(other.survival_reached)
        self.survival_died.update(other.survival_died)

    def is_empty(self) -> bool:
        return not (self.started or self.ended or self.close_codes or self.errors
                    or self.bad_frames or self.messages_sent or self.agent_messages or self.reconnect_attempts or self.missed_pongs or self.silence
                    or any(self.latency.values()) or self.recover)

    def to_wire(self) -> dict[str, Any]:
        """A msgpack- and JSON-safe dict (no tuple keys, no ints as keys)."""
        return {
            "marks": list(self.marks),
            "started": self.started,
            "authenticated": self.authenticated,
            "ended": [[o, p, n] for (o, p), n in self.ended.items()],
            "close_codes": [[p, c, r, i, n] for (p, c, r, i), n in self.close_codes.items()],
            "latency": {k: h.to_wire() for k, h in self.latency.items() if h},
            "recover": self.recover.to_wire(),
            "errors": dict(self.errors),
            "bad_frames": [[k, p, n] for (k, p), n in self.bad_frames.items()],
            "bad_sessions": self.bad_sessions,
            "messages": [self.messages_sent, self.messages_answered, self.agent_messages],
            "reconnect": [self.reconnect_attempts, self.reconnect_successes, self.not_resumed],
            "missed_pongs": self.missed_pongs,
            "silence": self.silence.to_wire(),
            "session_seconds": self.session_seconds,
            "survival": [[m, self.survival_reached[m], self.survival_died[m]] for m in self.marks],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Recorder:
        rec = cls(data.get("marks", DEFAULT_SURVIVAL_MARKS))
        rec.started = int(data["started"])
        rec.authenticated = int(data["authenticated"])
        rec.ended = Counter({(o, p): n for o, p, n in data["ended"]})
        rec.close_codes = Counter({(p, int(c), r, i): n for p, c, r, i, n in data["close_codes"]})
        for k, h in data["latency"].items():
            rec.latency[k] = Histogram.from_wire(h)
        rec.recover = Histogram.from_wire(data["recover"])
        rec.errors = Counter(data["errors"])
        rec.bad_frames = Counter({(k, p): n for k, p, n in data["bad_frames"]})
        rec.bad_sessions = int(data.get("bad_sessions", 0))
        rec.messages_sent, rec.messages_answered, rec.agent_messages = data.get("messages", (0, 0, 0))
        rec.reconnect_attempts, rec.reconnect_successes, *rest = data["reconnect"]
        rec.not_resumed = rest[0] if rest else 0
        rec.missed_pongs = int(data["missed_pongs"])
        if "silence" in data:
            rec.silence = Histogram.from_wire(data["silence"])
        rec.session_seconds = float(data["session_seconds"])
        for m, reached, died in data["survival"]:
            rec.survival_reached[m] = reached
            rec.survival_died[m] = died
        return rec
