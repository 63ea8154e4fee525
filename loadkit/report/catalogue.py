"""Every metric a loadkit report carries, as data: the one list everything else reads.

Why a catalogue
---------------
Thresholds, ``loadkit compare``, the terminal summary, the HTML report, the
web UI and the docs all talk about the same metrics. When each kept its own
list of phases, outcomes and names they drifted apart (a gate the parser
accepted that compare never looked at; a "no data" that one reader took as a
pass and another as a failure). Here each metric *family* is one
:class:`Entry`: its name pattern, unit, where it lives in the report, its
kind, which direction is worse, and what "no data" means for it.

"No data" is the distinction a release pipeline cares about most:

- ``vacuous``: nothing to measure *is* the good case. No reconnect attempt
  because nothing dropped: a gate on the reconnect success rate holds.
- ``not_measured``: the run did not collect what the gate needs (no session
  still at risk at 30 minutes, no auth sample at all). Such a gate is neither
  a pass nor a breach; it makes the verdict ``inconclusive``.

Name patterns use upper-case placeholders: ``PHASE`` (a latency phase),
``STAT`` (a statistic), ``CODE`` (a close code), ``NAME`` (an outcome),
``KIND`` (a bad-frame kind), ``MARK`` (a survival mark such as ``5m``).
docs/thresholds.md's metric table is :func:`markdown_table` verbatim (a test
checks it). Pure data and string formatting: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from loadkit.lifecycle import DROP_OUTCOMES, Outcome, Phase
from loadkit.metrics.recorder import LATENCY_PHASES as RECORDED_PHASES
from loadkit.protocol.base import BAD_FRAME_KINDS

__all__ = [
    "CATALOGUE",
    "DRIFT_STATS",
    "LATENCY_PHASES",
    "OUTCOMES",
    "PHASES",
    "BAD_FRAME_KINDS",
    "SESSION_PHASES",
    "STATS",
    "Entry",
    "Kind",
    "NoData",
    "entry",
    "markdown_table",
    "outcome_direction",
]


class Kind(enum.StrEnum):
    """What sort of number a metric is (decides how ``compare`` judges noise)."""

    COUNT = "count"        #: events counted over the run (Poisson noise)
    RATE = "rate"          #: a share or a ratio of counts (binomial noise)
    LATENCY = "latency"    #: a statistic of a latency histogram (order-statistic noise)
    GAUGE = "gauge"        #: a level or a ratio of levels at some instant
    ESTIMATE = "estimate"  #: a statistical estimate with its own confidence interval


class NoData(enum.StrEnum):
    """What it means when a report has nothing for a metric."""

    VACUOUS = "vacuous"            #: nothing to measure is the good case: a gate holds
    NOT_MEASURED = "not_measured"  #: the run did not measure it: a gate is inconclusive


#: Latency series every report has, in report order (``latency_ms.PHASE``): the recorder's.
LATENCY_PHASES: tuple[str, ...] = RECORDED_PHASES
#: Alias used by the threshold grammar (``PHASE.STAT``).
PHASES = LATENCY_PHASES
#: Statistics of a latency histogram, as written in ``latency_ms.PHASE``.
STATS: tuple[str, ...] = ("p50", "p90", "p95", "p99", "max", "min", "mean", "count")
#: Statistics a drift ratio may use (a count ratio says nothing about drift).
DRIFT_STATS: tuple[str, ...] = tuple(s for s in STATS if s != "count")
#: The lifecycle phases a session can end in (``sessions.by_phase``, ``close_codes[].phase``).
SESSION_PHASES: tuple[str, ...] = (*(p.value for p in Phase), "unknown")

#: Outcomes where more is better, and those that say nothing about the target.
_GOOD_OUTCOMES = frozenset({Outcome.CLOSED_NORMALLY.value})
_NEUTRAL_OUTCOMES = frozenset({Outcome.STOPPED_BY_HARNESS.value})
#: Every outcome a report may name: the lifecycle's, plus the master's write-off
#: for sessions that were open on a worker that vanished.
OUTCOMES: tuple[str, ...] = (*(o.value for o in Outcome), "lost_with_worker")
#: Outcomes that count as drops for an authenticated session.
DROPS: frozenset[str] = frozenset(o.value for o in DROP_OUTCOMES)
#: Close codes that say nothing bad about the target (a normal close).
NEUTRAL_CLOSE_CODES = frozenset({1000})


def outcome_direction(name: str) -> int:
    """+1 when more of this outcome is worse, -1 when more is better, 0 neither."""
    if name in _GOOD_OUTCOMES:
        return -1
    if name in _NEUTRAL_OUTCOMES:
        return 0
    return +1


@dataclass(frozen=True)
class Entry:
    """One metric family.

    ``worse``: +1 a higher value is worse, -1 a lower one, 0 neither (a
    change either way is only news). ``monotonic``: +1 the value can only
    grow while a run goes on, -1 only shrink, 0 either (used to call a
    breach settled early). ``vacuous_when`` says, for ``NoData.VACUOUS``,
    which empty denominator makes the gate hold.
    """

    name: str
    unit: str
    path: str
    kind: Kind
    worse: int
    no_data: NoData
    description: str
    example: str
    monotonic: int = 0
    vacuous_when: str = ""

    @property
    def direction(self) -> str:
        return {+1: "higher", -1: "lower", 0: "neither"}[self.worse]


def _latency(name: str, path: str, what: str, example: str, *, no_data: NoData = NoData.NOT_MEASURED,
             vacuous_when: str = "") -> Entry:
    return Entry(name, "ms", path, Kind.LATENCY, +1, no_data, what, example, vacuous_when=vacuous_when)


def _count(name: str, path: str, what: str, example: str, worse: int = +1, unit: str = "count") -> Entry:
    return Entry(name, unit, path, Kind.COUNT, worse, NoData.NOT_MEASURED, what, example, monotonic=+1)


CATALOGUE: tuple[Entry, ...] = (
    _latency("PHASE.STAT", "latency_ms.PHASE.STAT",
             "that statistic of the phase's latency (PHASE one of " + ", ".join(PHASES)
             + "; `count` is a count of samples, answers read once the run was stopping not among them); "
             "no sample: not measured", "auth.p95 < 300"),
    _count("sessions.started", "sessions.started", "sessions begun", "sessions.started > 100", worse=0,
           unit="sessions"),
    _count("sessions.authenticated", "sessions.authenticated", "sessions that got auth_ok",
           "sessions.authenticated > 100", worse=-1, unit="sessions"),
    Entry("sessions.open", "sessions", "sessions.open", Kind.GAUGE, 0, NoData.NOT_MEASURED,
          "sessions still open when the report was written", "sessions.open == 0"),
    _count("outcome.NAME.count", "sessions.outcomes.NAME",
           "sessions that ended with that outcome (an outcome that never occurred is 0)",
           "outcome.closed_normally.count >= 10", unit="sessions"),
    Entry("outcome.NAME.rate", "fraction", "sessions.outcomes.NAME / sessions.started", Kind.RATE, +1,
          NoData.NOT_MEASURED, "the same ÷ sessions started; none started: not measured",
          "outcome.auth_refused.rate < 0.001"),
    Entry("outcome.NAME.unexpected.count", "sessions", "sessions.outcomes.NAME - sessions.expected.NAME",
          Kind.COUNT, +1, NoData.NOT_MEASURED,
          "sessions with that outcome that their guest's --guest-mix behaviour did not ask for (a wrong "
          "auth frame refused, a silent guest idled out are asked for); also `.rate` (÷ sessions started)",
          "outcome.auth_refused.unexpected.count == 0"),
    _count("close.CODE.count", "close_codes[code=CODE].count",
           "close frames with that code (1000-4999), any phase or initiator", "close.1011.count == 0",
           unit="closes"),
    Entry("close.CODE.rate", "fraction", "close_codes[code=CODE].count / sessions.started", Kind.RATE, +1,
          NoData.NOT_MEASURED, "the same ÷ sessions started", "close.4008.rate < 0.01"),
    _count("close.CODE.PHASE.count", "close_codes[code=CODE,phase=PHASE].count",
           "only the closes that came in that lifecycle phase (also `.rate`)",
           "close.4008.during_auth.count == 0", unit="closes"),
    _count("drops", "drops", "authenticated sessions that ended unasked (a drop), not counting the "
           "expected drops of guests whose behaviour provokes them (`no_keepalive`, `fast_messages`)",
           "drops == 0", unit="sessions"),
    Entry("drop_rate", "fraction", "drop_rate", Kind.RATE, +1, NoData.NOT_MEASURED,
          "drops ÷ authenticated sessions of guests expected to stay up; none authenticated: not measured",
          "drop_rate < 0.01"),
    _count("expected_drops.count", "expected_drops.count",
           "drops of guests whose behaviour provokes them (idle timeout, rate limit): the gateway doing its job",
           "expected_drops.count > 0", unit="sessions", worse=0),
    Entry("drops_per_session_hour", "per hour", "drops_per_session_hour", Kind.RATE, +1, NoData.NOT_MEASURED,
          "drops per hour of authenticated session time", "drops_per_session_hour < 0.5"),
    Entry("session_hours", "hours", "session_hours", Kind.COUNT, 0, NoData.NOT_MEASURED,
          "hours of authenticated session time", "session_hours > 10", monotonic=+1),
    _count("reconnect.attempts", "reconnect.attempts", "reconnects tried after drops", "reconnect.attempts < 100",
           worse=0),
    _count("reconnect.successes", "reconnect.successes", "reconnects that authenticated again",
           "reconnect.successes > 0", worse=-1),
    _count("reconnect.not_resumed", "reconnect.not_resumed",
           "reconnects that reused their grant but got a new session", "reconnect.not_resumed == 0"),
    Entry("reconnect.success_rate", "fraction", "reconnect.successes / reconnect.attempts", Kind.RATE, -1,
          NoData.VACUOUS, "successes ÷ attempts; no attempt (nothing dropped): holds vacuously",
          "reconnect.success_rate > 0.9", vacuous_when="reconnect.attempts == 0"),
    _latency("reconnect.STAT", "reconnect.recover_ms.STAT",
             "time from a drop to authenticated again; no attempt: holds vacuously", "reconnect.p95 < 5000",
             no_data=NoData.VACUOUS, vacuous_when="reconnect.attempts == 0"),
    Entry("survival.MARK", "fraction", "survival.MARK.estimate", Kind.ESTIMATE, -1, NoData.NOT_MEASURED,
          "Kaplan-Meier estimate that an authenticated session is not dropped before MARK; "
          "nobody at risk at MARK: not measured", "survival.30m > 0.99"),
    Entry("survival.MARK.lower", "fraction", "survival.MARK.lower", Kind.ESTIMATE, -1, NoData.NOT_MEASURED,
          "lower end of the estimate's 95 % confidence interval (Greenwood; also `.upper`)",
          "survival.5m.lower > 0.99"),
    Entry("survival.MARK.at_risk", "sessions", "survival.MARK.at_risk", Kind.GAUGE, -1, NoData.NOT_MEASURED,
          "sessions still under observation at MARK", "survival.5m.at_risk >= 50"),
    Entry("drift.PHASE.STAT", "ratio", "drift.last.PHASE.STAT / drift.first.PHASE.STAT", Kind.GAUGE, +1,
          NoData.NOT_MEASURED, "that statistic over the run's last 5 series windows ÷ over the phase's first 5 "
          "windows with samples after the spawn, each side's samples merged (a short run: at most a third of "
          "its windows a side; `count` not allowed); a run of fewer than 6 series windows, a phase with no "
          "samples on one side, or a side with fewer than 100/(100−Q) samples for pQ: not measured",
          "drift.auth.p95 < 1.2"),
    _count("keepalive.missed_pongs", "keepalive.missed_pongs", "pings the server never answered",
           "keepalive.missed_pongs == 0"),
    _count("keepalive.timeouts", "keepalive.timeouts", "sessions ended by the pong timeout",
           "keepalive.timeouts == 0", unit="sessions"),
    _count("keepalive.pings_sent", "keepalive.pings_sent", "keepalive pings sent (pongs + missed_pongs + "
           "refused + in_flight = pings_sent)", "keepalive.pings_sent > 0", worse=0, unit="pings"),
    _count("keepalive.pongs", "keepalive.pongs", "pings answered (timed, or read once the run was stopping)",
           "keepalive.pongs > 0", worse=-1, unit="pings"),
    _count("keepalive.refused", "keepalive.refused", "pings the target refused (a rate-limited echo)",
           "keepalive.refused == 0", unit="pings"),
    _count("keepalive.in_flight", "keepalive.in_flight",
           "pings still awaiting their pong when their session ended or expired", "keepalive.in_flight < 10",
           unit="pings"),
    _count("errors.CODE.count", "errors.CODE", "error frames received with that code",
           "errors.4029.count < 10", unit="frames"),
    _count("bad_frames.count", "bad_frames.count",
           "frames the target should not have sent (docs/profiles.md, bad frames)",
           "bad_frames.count == 0", unit="frames"),
    _count("bad_frames.sessions", "bad_frames.sessions", "sessions that received at least one bad frame",
           "bad_frames.sessions == 0", unit="sessions"),
    _count("bad_frames.KIND.count", "bad_frames.by_kind.KIND",
           "bad frames of that kind (KIND one of " + ", ".join(BAD_FRAME_KINDS) + ")",
           "bad_frames.not_json.count == 0", unit="frames"),
    _count("messages.sent", "messages.sent", "guest messages sent", "messages.sent > 0", worse=0,
           unit="messages"),
    _count("messages.answered", "messages.answered", "guest messages whose ack (webmessaging: echo) matched",
           "messages.answered > 0", worse=-1, unit="messages"),
    _count("messages.unanswered", "messages.unanswered",
           "guest messages whose answer never came in time (a run that does not count them: not measured)",
           "messages.unanswered == 0", unit="messages"),
    _count("messages.refused", "messages.refused", "guest messages the target refused (rate-limited: 4029, 429)",
           "messages.refused == 0", unit="messages"),
    _count("messages.in_flight", "messages.in_flight",
           "guest messages still awaiting their answer when their session ended (answered + unanswered + "
           "refused + in flight = sent)", "messages.in_flight < 10", unit="messages"),
    _count("messages.agent_messages", "messages.agent_messages", "agent messages received",
           "messages.agent_messages > 0", worse=0, unit="messages"),
    _latency("harness.lag.STAT", "harness.lag_ms.STAT",
             "the load generator's own scheduling lag (a harness effect, not the target's)",
             "harness.lag.p99 < 50"),
    _latency("harness.wait.STAT", "harness.wait_ms.STAT",
             "time a guest waited for the harness before its step could run", "harness.wait.p95 < 20"),
    Entry("saturation.share_saturated", "fraction", "saturation.share_saturated", Kind.GAUGE, +1,
          NoData.NOT_MEASURED, "share of CPU samples above --saturation-cpu", "saturation.share_saturated < 0.2"),
    Entry("saturation.max_cpu_percent", "percent", "saturation.max_cpu_percent", Kind.GAUGE, +1,
          NoData.NOT_MEASURED, "highest load-generator CPU sample", "saturation.max_cpu_percent < 90"),
)

_BY_NAME = {e.name: e for e in CATALOGUE}


def entry(pattern: str) -> Entry:
    """The entry of a name pattern (``"PHASE.STAT"``, ``"drop_rate"``); KeyError if none."""
    return _BY_NAME[pattern]


def scalar_entries() -> Iterator[Entry]:
    """Entries whose name has no placeholder: one fixed report path each."""
    return (e for e in CATALOGUE if e.name == e.name.lower())


def markdown_table() -> str:
    """The metric table of docs/thresholds.md, generated (a test keeps the docs equal to it)."""
    lines = ["| metric | unit | kind | worse | no data | value, and where it is in the report | example |",
             "|---|---|---|---|---|---|---|"]
    for e in CATALOGUE:
        no_data = "holds (vacuous)" if e.no_data is NoData.VACUOUS else "not measured"
        lines.append(f"| `{e.name}` | {e.unit} | {e.kind.value} | {e.direction} | {no_data} "
                     f"| {e.description}: `{e.path}` | `{e.example}` |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
