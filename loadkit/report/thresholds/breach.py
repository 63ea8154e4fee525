"""Thresholds on a live run, for ``--abort-on-breach``: undecided until measured, settled when final.

Why apart from evaluation.py: a live report is cumulative since the run began
and grows as it goes on, so two things differ from the final evaluation. A
metric not measured *yet* is undecided (``passed`` None), never a failure:
it may be measured a minute later. And some breaches can no longer heal: a
count only grows (``close.1011.count == 0`` once a 1011 came), a ``max``
already above its limit stays above it. Those rows are ``settled``, which
lets the caller abort at once instead of waiting out its grace time. The
metric's ``monotonic`` trait (names.py, from the catalogue) says which.
Pure; pass pre-parsed thresholds to keep each call cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from loadkit.report.model import ThresholdRow
from loadkit.report.thresholds.evaluation import prepared, threshold_row
from loadkit.report.thresholds.expression import Threshold
from loadkit.report.thresholds.measure import Number

__all__ = ["evaluate_partial", "settled"]


def settled(threshold: Threshold, value: Number) -> bool:
    """True when no later value of a monotonic metric can change the result."""
    op, limit, trend = threshold.op, threshold.limit, threshold.metric.monotonic
    if trend > 0:  # later values lie in [value, +inf)
        return value >= limit if op in ("<", ">=") else value > limit
    if trend < 0:  # later values lie in (-inf, value]
        return value <= limit if op in ("<=", ">") else value < limit
    return False


def evaluate_partial(thresholds: Iterable[Threshold | str], report: Mapping[str, Any]) -> list[ThresholdRow]:
    """Evaluate thresholds on a live, in-progress report (for ``--abort-on-breach``).

    The report has the final report's shape, cumulative since the run began.
    Rows are those of :func:`~loadkit.report.thresholds.evaluate` with two
    differences:

    - a metric not measured *yet* gives ``passed: None`` (undecided), never False;
    - ``"settled": True`` when the result can no longer change as the run goes
      on: a count that only grows (``close.1011.count == 0`` once a 1011 came),
      a ``max`` already above its limit, a ``min`` already below.

    The caller decides how to act: abort at once on a settled breach, and on an
    unsettled one only after its own grace time. Nothing here has side effects;
    pass pre-parsed :class:`Threshold` objects to keep each call cheap.
    """
    rows = []
    for threshold in prepared(thresholds):
        value, note = threshold.metric.measure(report)
        if value is None:
            row = threshold_row(threshold, None, None, note, "not_measured")
            row["settled"] = False
        else:
            ok = threshold.check(value)
            row = threshold_row(threshold, value, ok, note, "pass" if ok else "fail")
            row["settled"] = settled(threshold, value)
        rows.append(row)
    return rows
