"""Noise bounds of ``loadkit compare``: when a change beyond its limit is still not a regression.

Why apart: this is the statistics (order-statistic intervals of percentiles,
binomial and Poisson bounds, Kaplan-Meier intervals, sample minimums and the
latency floor), the part that decides whether two runs of the same target
"differ"; the comparison only asks it. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadkit.report.compare_limits import Limit
from loadkit.report.thresholds import Metric
from loadkit.report.thresholds.measure import value_at

__all__ = ["DEFAULT_LATENCY_FLOOR_MS", "INTERVAL_WIDENING", "LAG_SHIFT_MS", "MIN_LAG_SAMPLES", "MIN_SESSIONS",
           "MIN_TAIL_SAMPLES", "harness_slowdown", "within_noise"]

#: Latency changes smaller than this (ms) are never regressions by default (--latency-floor).
DEFAULT_LATENCY_FLOOR_MS = 5.0
#: A percentile needs this many samples beyond it (n·(1-q)) in each run to be compared.
MIN_TAIL_SAMPLES = 5
#: A rate needs this many sessions under it in each run.
MIN_SESSIONS = 20
#: A percentile of the harness's timer lag must have grown by at least this (ms) to count as a busier
#: harness (a hundredth of a typical loaded machine's median lag: below it, it is the lag's own noise).
LAG_SHIFT_MS = 0.1
#: Fewer timer wake-ups than this in either run and the harness's lag is not compared.
MIN_LAG_SAMPLES = 20
#: Each run's order-statistic interval of a percentile is widened this many times around its estimate
#: before the two are compared: the interval assumes independent samples, but the samples of one run
#: share the machine's moment (a burst of load slows every session of that second), so the run holds
#: fewer independent samples than sessions. Twice the width is a quarter of the sessions; on a shared
#: 2-core machine that is what separates two runs of the same seed from a 50 ms slower auth.
INTERVAL_WIDENING = 2.0
_Z95 = 1.959963984540054


def _get(report: Mapping[str, Any], *path: str) -> Any:
    return value_at(report, path)


def harness_slowdown(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> float:
    """How many times later the candidate's harness woke up than the baseline's (1.0: not busier).

    Why: every latency the harness measures includes its own scheduling
    delay, and on a shared machine the target's too; the harness measures
    that delay directly (``harness.lag_ms``: timer wake-ups against when
    they were due, hundreds per run). The larger of the ratios of the two
    runs' median and p95 lag (each counted only when it grew by at least
    LAG_SHIFT_MS, both runs having MIN_LAG_SAMPLES wake-ups) is how much
    slower the machine was for the candidate.
    """
    lags = [_get(report, "harness", "lag_ms") or {} for report in (baseline, candidate)]
    if any((lag.get("count") or 0) < MIN_LAG_SAMPLES for lag in lags):
        return 1.0
    slowdown = 1.0
    for stat in ("p50", "p95"):
        before, after = (lag.get(stat) for lag in lags)
        if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before > 0 \
                and after - before >= LAG_SHIFT_MS:
            slowdown = max(slowdown, after / before)
    return slowdown


def within_noise(metric: Metric, baseline: Mapping[str, Any], candidate: Mapping[str, Any],
                 worsening: float, floor_ms: float, limit: Limit | None = None) -> str | None:
    """Why a change beyond its limit is still not a regression ("noise", "too few samples", ...), or None.

    Latency percentiles: the change must exceed the absolute floor; both
    runs need enough samples in the tail; a candidate whose harness was
    busier (:func:`harness_slowdown`) is judged against the baseline scaled
    by that slowdown ("harness lag" when that explains the change); and
    each run's distribution-free interval (``latency_ms.PHASE.ci``, order
    statistics, widened by INTERVAL_WIDENING) must not overlap. Rates of sessions: a two-proportion
    (binomial) bound. Drops per session-hour: a Poisson bound. Survival:
    the Kaplan-Meier intervals.
    """
    family = metric.family
    if family in ("PHASE.STAT", "reconnect.STAT"):
        if worsening <= floor_ms:
            return "below floor"
        if family == "PHASE.STAT":
            return _latency_noise(metric, baseline, candidate, worsening, floor_ms, limit)
        return None
    if family.endswith(".rate") or metric.name == "drop_rate":
        base = ("sessions", "authenticated") if metric.name == "drop_rate" else ("sessions", "started")
        n1, n2 = _get(baseline, *base) or 0, _get(candidate, *base) or 0
        if min(n1, n2) < MIN_SESSIONS:
            return "too few samples"
        p1, _ = metric.measure(baseline)
        p2, _ = metric.measure(candidate)
        if p1 is None or p2 is None:
            return None
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        sd = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)) ** 0.5
        return "noise" if abs(worsening) <= _Z95 * sd else None
    if metric.name == "drops_per_session_hour":
        d1, d2 = _get(baseline, "drops") or 0, _get(candidate, "drops") or 0
        h1, h2 = _get(baseline, "session_hours") or 0, _get(candidate, "session_hours") or 0
        if not h1 or not h2:
            return "too few samples"
        sd = ((d1 + 1) / h1 ** 2 + (d2 + 1) / h2 ** 2) ** 0.5
        return "noise" if worsening <= _Z95 * sd else None
    if metric.family == "survival.MARK":
        mark = metric.name.split(".")[1]
        b, c = _get(baseline, "survival", mark) or {}, _get(candidate, "survival", mark) or {}
        if None not in (b.get("lower"), c.get("upper")) and c["upper"] >= b["lower"]:
            return "noise"
    return None


def _latency_noise(metric: Metric, baseline: Mapping[str, Any], candidate: Mapping[str, Any],
                   worsening: float, floor_ms: float, limit: Limit | None) -> str | None:
    _, phase, stat = metric.args
    percentile = stat.startswith("p")
    if percentile:
        q = float(stat[1:]) / 100.0
        for report in (baseline, candidate):
            n = _get(report, "latency_ms", phase, "count") or 0
            if n * (1 - q) < MIN_TAIL_SAMPLES:
                return "too few samples"
    slowdown = harness_slowdown(baseline, candidate)
    before, _ = metric.measure(baseline)
    if metric.direction > 0 and slowdown > 1.0 and before is not None:
        left = worsening - (slowdown - 1.0) * before  # what a machine that much slower does not explain
        if left <= floor_ms or (limit is not None and not limit.exceeded(left, before * slowdown)):
            return "harness lag"
    if percentile:
        b = _widened(baseline, phase, stat)
        c = _widened(candidate, phase, stat)
        if b is not None and c is not None:
            overlap = c[0] <= b[1] if metric.direction > 0 else c[1] >= b[0]
            if overlap:
                return "noise"
    return None


def _widened(report: Mapping[str, Any], phase: str, stat: str) -> tuple[float, float] | None:
    """The run's interval of ``latency_ms.PHASE.STAT``, INTERVAL_WIDENING times as wide around the estimate."""
    ci = _get(report, "latency_ms", phase, "ci", stat)
    estimate = _get(report, "latency_ms", phase, stat)
    if not isinstance(ci, list) or len(ci) != 2 or not all(isinstance(v, (int, float)) for v in (*ci, estimate)):
        return None
    low, high = ci
    return estimate - INTERVAL_WIDENING * (estimate - low), estimate + INTERVAL_WIDENING * (high - estimate)
