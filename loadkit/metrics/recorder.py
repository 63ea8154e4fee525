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

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from loadkit.lifecycle import DROP_OUTCOMES, Result
from loadkit.metrics.histogram import Histogram
from loadkit.metrics.wire import Packer, Unpacker, WireError

#: Latency series every report has, even when empty (the metric catalogue,
#: loadkit.report.catalogue, reads the phases from here: metrics may not import report).
LATENCY_PHASES = ("token", "connect", "auth", "message", "ping", "reply")
#: The harness's own delays, kept beside the phases (same histograms, same
#: merge and wire format) but reported apart, under ``report["harness"]``:
#: time a token call waited inside the harness before it went on the wire
#: (a free connection, the resolver), and generator lag (a timer's wake-up
#: after it was due).
HARNESS_WAIT = "harness_wait"
HARNESS_LAG = "harness_lag"
HARNESS_SERIES = (HARNESS_WAIT, HARNESS_LAG)
#: At most this many distinct failure details per outcome ("HTTP 500"); more read "other".
MAX_FAILURE_DETAILS = 16
#: Distinct failure-detail texts kept (a soak against a broken target must not grow without end).
MAX_DETAILS = 100
OTHER_DETAILS = "(other details)"
#: Survival marks in seconds (``--survival-marks``).
DEFAULT_SURVIVAL_MARKS = (60, 300, 1800, 3600)


class Recorder:
    __slots__ = (
        "started", "authenticated", "ended", "close_codes", "latency", "recover",
        "errors", "bad_frames", "reconnect_attempts", "reconnect_successes",
        "missed_pongs", "silence", "not_resumed", "session_seconds", "survived", "dropped_at",
        "marks", "failures", "bad_sessions", "messages_sent", "messages_answered", "agent_messages", "failure_details",
        "messages_unanswered", "messages_refused", "messages_in_flight", "pings_sent", "pings_refused",
        "pings_in_flight", "expected_authenticated", "expected_drops",
        "expected_outcomes", "untimed",
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
        #: messages whose ack did not come within PENDING_ANSWER_S (their pending entry expired)
        self.messages_unanswered = 0
        #: messages the target refused (rate-limited: 4029, 429): no ack will come
        self.messages_refused = 0
        #: messages still awaiting their ack when their session ended (a stop, a drop, the
        #: planned end): with the three above, every message sent is accounted for
        self.messages_in_flight = 0
        #: what the target said when something failed (close reasons, parser
        #: messages): text -> times, at most MAX_DETAILS texts (the rest in OTHER_DETAILS)
        self.failure_details: Counter[str] = Counter()
        self.reconnect_attempts = 0
        self.reconnect_successes = 0
        self.missed_pongs = 0
        #: keepalive pings sent; those the target refused (a rate-limited echo); those still
        #: awaiting their pong when their session ended or expired. With the pongs (timed or
        #: untimed) and the missed ones, every ping sent is accounted for.
        self.pings_sent = 0
        self.pings_refused = 0
        self.pings_in_flight = 0
        #: reconnects that reused their grant but got a new session (``newSession: true``)
        self.not_resumed = 0
        #: on a keepalive timeout: time since the last frame from the server, µs
        self.silence = Histogram()
        #: authenticated seconds of ended sessions (for drops per session-hour)
        self.session_seconds = 0.0
        #: authenticated sessions' ages in ms: censored (did not drop) and at their drop
        #: (Kaplan-Meier's censorings and events; see loadkit.metrics.survival)
        self.survived = Histogram()
        self.dropped_at = Histogram()
        #: (outcome, detail) -> sessions that ended without ever authenticating,
        #: e.g. ("token_refused", "HTTP 500"): what the summary names when nothing got through
        self.failures: Counter[tuple[str, str]] = Counter()
        #: behaviour -> authenticated sessions / drops of guests whose behaviour is
        #: meant to make the gateway end them (a drop among ``Behaviour.expects``): a
        #: gateway enforcing its idle timeout is healthy, so these stay out of
        #: ``drops``, ``drop_rate``, drops per session-hour and survival.
        self.expected_authenticated: Counter[str] = Counter()
        self.expected_drops: Counter[str] = Counter()
        #: outcome -> sessions that ended as their guest's behaviour meant them to
        #: (``Behaviour.expects``: a wrong auth frame refused, a silent guest idled out)
        self.expected_outcomes: Counter[str] = Counter()
        #: phase -> answers read once the run was stopping: counted where they count
        #: (answered, authenticated), not timed (``LiveSessions.stopping``)
        self.untimed: Counter[str] = Counter()

    # -- hot path --------------------------------------------------------------

    def observe(self, phase: str, value_us: int) -> None:
        self.latency[phase].record(value_us)

    def session_started(self) -> None:
        self.started += 1

    def session_authenticated(self, expected_drop: str | None = None) -> None:
        """Count one authentication; ``expected_drop`` names the behaviour of a
        guest that is meant to be dropped (its session is counted apart)."""
        self.authenticated += 1
        if expected_drop is not None:
            self.expected_authenticated[expected_drop] += 1

    def session_ended(self, result: Result, established_s: float,
                      close: tuple[int, str, str] | None, detail: str = "",
                      expected_drop: str | None = None, expected: bool = False) -> None:
        """Count one ended session: its outcome, its close code, its survival.

        ``detail`` says what the wire said when a session failed before auth
        ("HTTP 500"); only the first few distinct ones per outcome are kept
        (per process: a merge adds them up as they are). ``expected_drop``
        names the behaviour of a guest meant to be dropped: its outcome and
        close are counted as any other, its drop apart. ``expected``: the
        session ended as its guest's behaviour meant it to.
        """
        phase = result.phase.value
        self.ended[(result.outcome.value, phase)] += 1
        if expected:
            self.expected_outcomes[result.outcome.value] += 1
        if close is not None:
            code, reason, initiator = close
            self.close_codes[(phase, code, reason, initiator)] += 1
        if result.authenticated and expected_drop is not None:
            if result.is_drop:
                self.expected_drops[expected_drop] += 1
        elif result.authenticated:
            self.session_seconds += established_s
            age_ms = int(established_s * 1000.0)
            (self.dropped_at if result.is_drop else self.survived).record(age_ms)
        elif result.outcome.value not in ("closed_normally", "stopped_by_harness"):
            detail = detail[:80]
            key = (result.outcome.value, detail)
            if key not in self.failures and sum(
                    1 for o, _ in self.failures if o == key[0]) >= MAX_FAILURE_DETAILS:
                key = (key[0], "other")
            self.failures[key] += 1

    # -- derived -----------------------------------------------------------------

    @property
    def ended_total(self) -> int:
        return sum(self.ended.values())

    def outcomes(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (outcome, _phase), n in self.ended.items():
            out[outcome] += n
        return dict(sorted(out.items()))

    def note_detail(self, text: str, n: int = 1) -> None:
        """Count one failure detail; past MAX_DETAILS distinct texts they share one row."""
        details = self.failure_details
        if text not in details and len(details) >= MAX_DETAILS:
            text = OTHER_DETAILS
        details[text] += n

    def bad_frame_count(self) -> int:
        return sum(self.bad_frames.values())

    def drops(self) -> int:
        """Drops of guests expected to stay up (expected drops are apart)."""
        return sum(
            n for (outcome, phase), n in self.ended.items()
            if outcome in DROP_OUTCOMES and phase in ("just_after_auth", "established")
        ) - sum(self.expected_drops.values())

    def at_risk_authenticated(self) -> int:
        """Authenticated sessions of guests expected to stay up: drop_rate's denominator."""
        return self.authenticated - sum(self.expected_authenticated.values())

    # -- delta and merge -------------------------------------------------------

    def detach(self) -> Recorder:
        """Everything recorded since the last detach, as a new Recorder; self restarts empty."""
        old = Recorder(self.marks)
        for name in self.__slots__:
            setattr(old, name, getattr(self, name))
        self.__init__(self.marks)  # type: ignore[misc]
        return old

    #: fields that say how the recorder counts, not what it counted: never added up
    CONFIG_FIELDS = ("marks",)

    def merge(self, other: Recorder) -> None:
        """Add everything ``other`` counted, field by field, by the field's type.

        Generic on purpose: a new field of a known kind (int, float, Counter,
        Histogram, dict of Histograms, list) is merged, shipped (``to_wire``)
        and read back (``from_wire``) with no further code.
        """
        for name in self.__slots__:
            if name in self.CONFIG_FIELDS:
                continue
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, Histogram):
                mine.merge(theirs)
            elif isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, dict):
                for key, hist in theirs.items():
                    if key in mine:
                        mine[key].merge(hist)
                    else:
                        fresh = mine[key] = Histogram()
                        fresh.merge(hist)
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, name, mine + theirs)
        self._cap_details()

    def _cap_details(self) -> None:
        if len(self.failure_details) > MAX_DETAILS:  # the cap holds across merges too
            capped, self.failure_details = self.failure_details, Counter()
            for text, n in capped.most_common():
                self.note_detail(text, n)

    def is_empty(self) -> bool:
        """Nothing counted in any field (a window with no activity at all)."""
        for name in self.__slots__:
            value = getattr(self, name)
            if name in self.CONFIG_FIELDS or not value:
                continue
            if isinstance(value, dict) and not isinstance(value, Counter):
                if any(value.values()):  # a table of histograms: empty ones do not count
                    return False
            else:
                return False
        return True

    def to_wire(self) -> dict[str, Any]:
        """A compact, versioned, msgpack-safe form (Locust's worker → master codec).

        Field by field, by type (as ``merge``): numbers as they are, Counters
        as ``[key, n]`` pairs (tuple keys as lists), histograms as headers of
        one shared area, empty fields left out; the fields and the area each one
        zstd frame (``loadkit.metrics.wire``). ``v`` is the wire version, checked
        by ``from_wire``.
        """
        out: dict[str, Any] = {"marks": list(self.marks)}
        packer = Packer()
        for name in self.__slots__:
            if name in self.CONFIG_FIELDS:
                continue
            value = getattr(self, name)
            if not value:
                continue
            if isinstance(value, Histogram):
                out[name] = packer.pack(value)
            elif isinstance(value, Counter):
                out[name] = [[list(k) if isinstance(k, tuple) else k, n] for k, n in value.items() if n]
            elif isinstance(value, dict):
                out[name] = {k: packer.pack(h) for k, h in value.items() if h}
            else:
                out[name] = value
        return packer.seal(out)

    @classmethod
    def read_wire(cls, data: Mapping[str, Any]) -> WireReport:
        """Read and check all of ``to_wire``'s form; WireError (saying what to do) for another version or shape.

        Nothing is merged yet (``merge_wire`` does): a report that cannot be
        read is refused whole, never half-merged.
        """
        if not isinstance(data, Mapping):
            raise WireError(f"worker report is a {type(data).__name__}, not a map")
        reader = Unpacker(data)
        kinds = _field_kinds()
        checked: list[tuple[str, str, Any]] = []
        try:
            for name, value in reader.fields.items():
                if name in cls.CONFIG_FIELDS:
                    continue
                kind = kinds.get(name)
                if kind is None:
                    raise WireError(f"worker report has a field {name!r} this loadkit does not know: "
                                    "run the same loadkit version on the master and every worker")
                if kind == "histogram":
                    checked.append((name, kind, reader.check(value)))
                elif kind == "histograms":
                    checked.append((name, kind, {str(k): reader.check(h) for k, h in value.items()}))
                elif kind == "counter":
                    keys, counts = zip(*value, strict=True) if value else ((), ())
                    try:  # every count an integer: array refuses anything else, in C
                        array("q", counts)
                    except (TypeError, OverflowError):
                        raise WireError(f"worker report: {name} has a count that is not an integer") from None
                    named = [tuple(k) if k.__class__ is list else k for k in keys]
                    checked.append((name, kind, list(zip(named, counts, strict=True))))
                elif kind == "list":
                    checked.append((name, kind, list(value)))
                else:
                    if not isinstance(value, int | float) or isinstance(value, bool):
                        raise WireError(f"worker report: {name} is {value!r}, not a number")
                    checked.append((name, kind, float(value) if kind == "float" else int(value)))
            marks = tuple(int(m) for m in reader.fields.get("marks", DEFAULT_SURVIVAL_MARKS))
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, WireError):
                raise
            raise WireError(f"worker report is malformed: {exc!r}") from None
        return WireReport(reader, marks, checked)

    def merge_wire(self, report: WireReport) -> None:
        """Add a report read by ``read_wire``: histograms straight from its bytes, no Recorder in between."""
        reader = report.reader
        for name, kind, value in report.fields:
            if kind == "histogram":
                reader.merge(getattr(self, name), value)
            elif kind == "histograms":
                table = getattr(self, name)
                for key, plan in value.items():
                    hist = table.get(key)
                    if hist is None:
                        hist = table[key] = Histogram()
                    reader.merge(hist, plan)
            elif kind == "counter":
                counter = getattr(self, name)
                get = counter.get
                for key, n in value:
                    counter[key] = get(key, 0) + n
            elif kind == "list":
                getattr(self, name).extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)
        self._cap_details()

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Recorder:
        """``to_wire``'s form as a Recorder of its own; WireError for another version or shape."""
        report = cls.read_wire(data)
        rec = cls(report.marks)
        rec.merge_wire(report)
        return rec


class WireReport(NamedTuple):
    """A worker report read and checked whole (``Recorder.read_wire``), ready to merge."""

    reader: Unpacker
    marks: tuple[int, ...]
    fields: list[tuple[str, str, Any]]


_KINDS: dict[str, str] = {}


def _field_kinds() -> dict[str, str]:
    """Each field's kind, by the type a fresh Recorder gives it (``merge``'s rule, once)."""
    if not _KINDS:
        blank = Recorder()
        for name in Recorder.__slots__:
            if name in Recorder.CONFIG_FIELDS:
                continue
            value = getattr(blank, name)
            _KINDS[name] = ("histogram" if isinstance(value, Histogram) else "counter" if isinstance(value, Counter)
                            else "histograms" if isinstance(value, dict) else "list" if isinstance(value, list)
                            else "float" if isinstance(value, float) else "int")
    return _KINDS
