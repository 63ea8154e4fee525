"""Reading a metric's number out of a report dict, or saying why it is not there.

Why apart from the grammar: a report is JSON that may come from an older
loadkit, a live run that has not measured everything yet, or a file someone
edited; every reader here must tolerate a missing section, a null, a string
where a number was expected. Each *kind* of metric (a scalar at a path, a
close-code count, a survival mark, ...) has one reader in :data:`MEASURES`;
a reader returns ``(value, note)`` and a value of ``None`` means *not
measured* (the note says what was missing). Pure: a few dict look-ups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from loadkit.report.catalogue import OUTCOMES
from loadkit.report.thresholds.marks import format_mark, mark_seconds

__all__ = ["DRIFT_MIN_WINDOWS", "drift_min_samples", "KNOWN_OUTCOMES", "MEASURES", "Measurement", "Number", "number_at"]

Number = int | float
#: ``(value, note)``: value None means not measured, and the note says why.
Measurement = tuple[Number | None, str | None]
#: What a reader gets: the metric's parsed arguments (see names.py) and the report.
Reader = Callable[[tuple[Any, ...], Mapping[str, Any]], Measurement]

#: A drift ratio compares the last series windows with the first (loadkit.metrics.drift):
#: on a run of a few windows that is the spawn against the stop, not a trend.
DRIFT_MIN_WINDOWS = 6


def drift_min_samples(stat: str) -> int:
    """Samples each side of a drift ratio needs for ``stat``: a pQ of fewer than 100/(100-Q) is the maximum.

    p50: 2, p90: 10, p95: 20, p99: 100; ``max``, ``min`` and ``mean``: 1.
    A ratio of two sides' maxima is one sample against one: the noise the
    spans are there to keep out of a drift gate.
    """
    if stat.startswith("p"):
        return math.ceil(100 / (100 - float(stat[1:])) - 1e-9)
    return 1

# Outcomes the harness can report. Any other name is accepted (a custom
# profile may add outcomes), but a name that neither this set nor the report
# knows gets a note, so that a misspelt outcome does not read as zero unseen.
KNOWN_OUTCOMES = frozenset(OUTCOMES)


def _number(value: Any) -> Number | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def value_at(report: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a report (nested mappings), or None where the path breaks off."""
    node: Any = report
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def number_at(report: Mapping[str, Any], path: tuple[str, ...]) -> Number | None:
    """The finite number at ``path`` in a report, or None (missing, null, not a number)."""
    return _number(value_at(report, path))


def _not_measured(where: str) -> Measurement:
    return None, f"not measured ({where})"


def _measure_path(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    """A scalar or a latency statistic: ``args`` is its path in the report."""
    value = number_at(report, args)
    if value is None:
        return _not_measured(f"{'.'.join(args)} is missing or null")
    return value, None


def _measure_keyed_count(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    section, key = args
    table = report.get(section)
    if not isinstance(table, Mapping):
        return _not_measured(f"{section} is missing")
    value = _number(table.get(key, 0))
    return (value, None) if value is not None else _not_measured(f"{section}.{key} is not a number")


def _measure_bad_frames(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    """``bad_frames.count`` or ``bad_frames.KIND.count``; reads ``{count, by_kind}`` or a bare {kind: n}."""
    (kind,) = args
    section = report.get("bad_frames")
    if not isinstance(section, Mapping):
        return _not_measured("bad_frames is missing")
    by_kind = section.get("by_kind", section if "count" not in section else {})
    if not isinstance(by_kind, Mapping):
        return _not_measured("bad_frames.by_kind is missing")
    if kind is None:
        total = _number(section.get("count"))
        if total is None:
            total = sum(_number(v) or 0 for v in by_kind.values())
        return total, None
    value = _number(by_kind.get(kind, 0))
    return (value, None) if value is not None else _not_measured(f"bad_frames.by_kind.{kind} is not a number")


def _per_started(count: Number | None, note: str | None, stat: str, report: Mapping[str, Any]) -> Measurement:
    if stat == "count" or count is None:
        return count, note
    started = number_at(report, ("sessions", "started"))
    if not started:
        return _not_measured("no sessions started to divide by")
    return count / started, note


def _close_code(value: Any) -> int | None:
    """A close_codes row's code as an int (rows written as text or float count too), else None."""
    if not isinstance(value, (int, float, str)):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):
        return None


def _measure_close(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    code, phase, stat = args
    rows = report.get("close_codes")
    if not isinstance(rows, list):
        return _not_measured("close_codes is missing")
    total: Number = 0
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        if _close_code(row.get("code")) != code or (phase is not None and row.get("phase") != phase):
            continue
        total += _number(row.get("count")) or 0
    return _per_started(total, None, stat, report)


def _measure_outcome(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    outcome, stat = args[0], args[1]
    if len(args) > 2 and args[2]:
        return _measure_unexpected(outcome, stat, report)
    outcomes = value_at(report, ("sessions", "outcomes"))
    if not isinstance(outcomes, Mapping):
        return _not_measured("sessions.outcomes is missing")
    note = None
    if outcome in outcomes:
        count = _number(outcomes[outcome])
        if count is None:
            return _not_measured(f"sessions.outcomes.{outcome} is not a number")
    else:
        count = 0
        if outcome not in KNOWN_OUTCOMES:
            note = f'outcome "{outcome}" never occurred in this run and is not a known outcome: check its spelling'
    return _per_started(count, note, stat, report)


def _measure_unexpected(outcome: str, stat: str, report: Mapping[str, Any]) -> Measurement:
    """Sessions with that outcome less those whose guest's behaviour meant them to end so."""
    counted = _measure_outcome((outcome, "count"), report)
    if counted[0] is None:
        return counted
    expected = value_at(report, ("sessions", "expected"))
    if not isinstance(expected, Mapping):
        return _not_measured("sessions.expected is missing (a report older than expected outcomes)")
    return _per_started(counted[0] - (_number(expected.get(outcome, 0)) or 0), counted[1], stat, report)


def _measure_reconnect_success_rate(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    attempts = number_at(report, ("reconnect", "attempts"))
    successes = number_at(report, ("reconnect", "successes"))
    if attempts is None or successes is None:
        return _not_measured("reconnect.attempts or reconnect.successes is missing")
    if attempts == 0:
        return _not_measured("no reconnect attempts")
    return successes / attempts, None


def _measure_survival(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    """A Kaplan-Meier figure at a mark: the estimate, a CI bound, or the number at risk.

    Nobody at risk at the mark means nothing was observed there: not measured
    (a 0 % read off an empty risk set would be a fiction). Older reports with
    ``reached``/``eligible`` only are read as their naive share.
    """
    seconds, field = args
    survival = report.get("survival")
    if not isinstance(survival, Mapping):
        return _not_measured("survival is missing")
    for key, entry in survival.items():
        if mark_seconds(key) != seconds or not isinstance(entry, Mapping):
            continue
        at_risk = _number(entry.get("at_risk"))
        if field == "at_risk":
            return (at_risk, None) if at_risk is not None else _not_measured(f"survival.{key}.at_risk is missing")
        if at_risk == 0:
            return _not_measured(f"no session was still at risk at {key}")
        name = "estimate" if field == "estimate" else field
        value = _number(entry.get(name))
        if value is None and field == "estimate":
            value = _number(entry.get("rate"))
        if value is not None:
            return value, None
        reached, eligible = _number(entry.get("reached")), _number(entry.get("eligible"))
        if field == "estimate" and reached is not None and eligible:
            return reached / eligible, None
        return _not_measured(f"no session was at risk at {key}")
    return _not_measured(f"no survival mark {format_mark(seconds)} in this report")


def _measure_drift(args: tuple[Any, ...], report: Mapping[str, Any]) -> Measurement:
    phase, stat = args
    windows = number_at(report, ("drift", "windows"))
    if windows is not None and windows < DRIFT_MIN_WINDOWS:
        return _not_measured(f"drift needs a run of at least {DRIFT_MIN_WINDOWS} series windows, "
                             f"this one had {windows:g}")
    first = number_at(report, ("drift", "first", phase, stat))
    last = number_at(report, ("drift", "last", phase, stat))
    if first is None or last is None:
        drift = value_at(report, ("drift",))
        if first is not None or not isinstance(drift, Mapping) or "steady_from_window" not in drift:
            return _not_measured(f"drift.{'last' if first is not None else 'first'} has no {phase}.{stat}")
        if drift["steady_from_window"] is None:
            return _not_measured("no series window began after the spawn completed: "
                                 "there is no steady state to compare the end with")
        return _not_measured(f"drift.first has no {phase}.{stat}: no window after the spawn "
                             f"(before the last ones) had {phase} samples")
    need = drift_min_samples(stat)
    for side in ("first", "last"):
        count = number_at(report, ("drift", side, phase, "count"))
        if count is not None and count < need:
            return _not_measured(f"drift.{side}.{phase} has {count:g} samples; {stat} needs at least {need} "
                                 f"(with fewer it is the side's maximum)")
    if first <= 0:
        return _not_measured(f"drift.first.{phase}.{stat} is {first}, cannot divide by it")
    return last / first, None


#: One reader per metric kind (``Metric.kind``).
MEASURES: dict[str, Reader] = {
    "scalar": _measure_path,
    "latency": _measure_path,
    "keyed_count": _measure_keyed_count,
    "bad_frames": _measure_bad_frames,
    "close": _measure_close,
    "outcome": _measure_outcome,
    "reconnect_success_rate": _measure_reconnect_success_rate,
    "survival": _measure_survival,
    "drift": _measure_drift,
}
