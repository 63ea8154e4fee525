"""Threshold expressions such as ``auth.p95 < 300``: parsed once, evaluated on reports.

Theory of operation
-------------------
A threshold is ``METRIC OP NUMBER``. :func:`parse` (expression.py) checks the
whole grammar when the command line is read, so a typo fails in the first
second of a soak rather than after it. The metric part compiles to a
:class:`Metric` (names.py): a small frozen value that knows where its number
lives in a report (:meth:`Metric.measure`, through the readers in
measure.py), whether a larger value is worse (used by ``loadkit compare``)
and whether it can only grow while a run goes on (used to decide a breach
early in :func:`evaluate_partial`, breach.py).

A metric that a report does not carry (a null statistic, a missing section, a
rate over zero sessions) is *not measured*. :func:`evaluate` (evaluation.py)
fails such a threshold with a note saying so: a gate on data that was never
collected must not pass silently. :func:`evaluate_partial` leaves it
undecided instead (``passed`` is ``None``), since a live run may measure it
later.

Everything here is pure: no I/O, no clocks; evaluating a threshold is a few
dict look-ups, cheap enough to run on every live report. This package's
names are its public face; import from here, not from the modules.

The metric grammar (see ``docs/thresholds.md``)::

    PHASE.STAT                      latency_ms[PHASE][STAT], milliseconds
    drop_rate | drops | drops_per_session_hour | session_hours
    close.CODE[.PHASE].count|rate   close frames with that code (rate: / sessions.started)
    outcome.NAME.count|rate         sessions.outcomes[NAME] (rate: / sessions.started)
    reconnect.STAT                  reconnect.recover_ms[STAT], milliseconds
    reconnect.attempts|successes|success_rate
    survival.MARK                   survival[MARK].rate, MARK like 90s, 5m, 1h
    drift.PHASE.STAT                drift.last[PHASE][STAT] / drift.first[PHASE][STAT]
    sessions.started|authenticated|open
    keepalive.missed_pongs|timeouts
    bad_frames.count|sessions       frames the target should not have sent; sessions that got one
    bad_frames.KIND.count           bad_frames.by_kind[KIND] (KIND as in docs/report-schema.md)
    messages.sent|answered|unanswered|agent_messages
    ... and the rest of loadkit.report.catalogue, which is the full list
"""

from __future__ import annotations

from loadkit.report.catalogue import DRIFT_STATS, PHASES, STATS
from loadkit.report.model import ThresholdRow
from loadkit.report.thresholds.breach import evaluate_partial
from loadkit.report.thresholds.evaluation import STATUSES, evaluate
from loadkit.report.thresholds.expression import OPERATORS, Threshold, parse, parse_all
from loadkit.report.thresholds.marks import format_mark, mark_seconds
from loadkit.report.thresholds.measure import DRIFT_MIN_WINDOWS, KNOWN_OUTCOMES
from loadkit.report.thresholds.names import Metric, ThresholdError, parse_metric

__all__ = [
    "DRIFT_MIN_WINDOWS",
    "DRIFT_STATS",
    "KNOWN_OUTCOMES",
    "OPERATORS",
    "PHASES",
    "STATS",
    "STATUSES",
    "Metric",
    "Threshold",
    "ThresholdError",
    "ThresholdRow",
    "evaluate",
    "evaluate_partial",
    "format_mark",
    "mark_seconds",
    "parse",
    "parse_all",
    "parse_metric",
]
