"""Evaluating thresholds on a finished report: one row per gate, for the verdict.

Why "not measured" is not a pass: a metric the report does not carry (a null
statistic, a missing section, a rate over zero sessions) means the gate saw
no data. :func:`evaluate` then does what the catalogue says no data means for
that metric: *vacuous* (the gate holds, e.g. a reconnect gate when nothing
needed a reconnect) or *not measured* (``passed`` is None, and the verdict
becomes ``inconclusive``): a gate on data that was never collected must not
pass silently. The live variant for ``--abort-on-breach`` is in breach.py.
Pure: a few dict look-ups per threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from loadkit.report.model import ThresholdRow
from loadkit.report.thresholds.expression import Threshold, parse
from loadkit.report.thresholds.measure import Number

__all__ = ["STATUSES", "evaluate", "prepared", "threshold_row"]

#: A threshold row's ``status``: the four things a gate can be at the end of a run.
STATUSES = ("pass", "fail", "not_measured", "vacuous")


def prepared(thresholds: Iterable[Threshold | str]) -> list[Threshold]:
    """Thresholds as parsed objects; strings are parsed (and may raise ThresholdError)."""
    return [t if isinstance(t, Threshold) else parse(t) for t in thresholds]


def threshold_row(threshold: Threshold, value: Number | None, passed: bool | None, note: str | None,
                  status: str) -> ThresholdRow:
    """A report's ``thresholds[]`` row (docs/report-schema.md); ``note`` only when there is one."""
    row = ThresholdRow(expr=threshold.expr, metric=threshold.metric.name, op=threshold.op,
                       limit=threshold.limit, value=value, passed=passed, status=status)
    if note:
        row["note"] = note
    return row


def evaluate(thresholds: Iterable[Threshold | str], report: Mapping[str, Any]) -> list[ThresholdRow]:
    """Evaluate thresholds on a finished report.

    Returns one row per threshold, in order:
    ``{"expr", "metric", "op", "limit", "value", "passed", "status"}`` plus
    ``"note"`` when there is something to say. ``status`` is ``pass`` or
    ``fail`` for a measured value; with no data it is what the catalogue says
    no data means for the metric: ``vacuous`` (the gate holds, ``passed:
    true``, e.g. a reconnect gate when nothing dropped) or ``not_measured``
    (``passed: null``, a note starting "not measured"; the verdict becomes
    ``inconclusive``: neither a pass nor a breach). Strings are parsed first
    (and may raise :class:`ThresholdError`).
    """
    rows = []
    for threshold in prepared(thresholds):
        value, note = threshold.metric.measure(report)
        if value is not None:
            ok = threshold.check(value)
            rows.append(threshold_row(threshold, value, ok, note, "pass" if ok else "fail"))
            continue
        why = threshold.metric.vacuous(report)
        if why is not None:
            rows.append(threshold_row(threshold, None, True, why, "vacuous"))
        else:
            rows.append(threshold_row(threshold, None, None, note, "not_measured"))
    return rows
