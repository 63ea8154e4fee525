"""Threshold expressions such as ``auth.p95 < 300``: parsed once, evaluated on reports.

Theory of operation
-------------------
A threshold is ``METRIC OP NUMBER``. :func:`parse` checks the whole grammar
when the command line is read, so a typo fails in the first second of a soak
rather than after it. The metric part compiles to a :class:`Metric`: a small
frozen value that knows where its number lives in a report
(:meth:`Metric.measure`), whether a larger value is worse (used by
``loadkit compare``) and whether it can only grow while a run goes on (used to
decide a breach early in :func:`evaluate_partial`).

A metric that a report does not carry (a null statistic, a missing section, a
rate over zero sessions) is *not measured*. :func:`evaluate` fails such a
threshold with a note saying so: a gate on data that was never collected must
not pass silently. :func:`evaluate_partial` leaves it undecided instead
(``passed`` is ``None``), since a live run may measure it later.

Everything here is pure: no I/O, no clocks; evaluating a threshold is a few
dict look-ups, cheap enough to run on every live report.

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

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loadkit.errors import ConfigError
from loadkit.report import catalogue
from loadkit.report.catalogue import (
    BAD_FRAME_KINDS,
    DRIFT_STATS,
    NEUTRAL_CLOSE_CODES,
    OUTCOMES,
    PHASES,
    STATS,
    NoData,
    outcome_direction,
)

__all__ = [
    "DRIFT_STATS",
    "KNOWN_OUTCOMES",
    "OPERATORS",
    "PHASES",
    "STATS",
    "Metric",
    "Threshold",
    "ThresholdError",
    "evaluate",
    "evaluate_partial",
    "format_mark",
    "mark_seconds",
    "parse",
    "parse_all",
    "parse_metric",
]

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
# What "300 > auth.p95" means with the metric on the left.
_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}

# Everything below about names comes from the catalogue: no private lists.
_SCALARS: dict[str, tuple[tuple[str, ...], int, int]] = {
    e.name: (tuple(e.path.split(".")), e.worse, e.monotonic)
    for e in catalogue.scalar_entries()
    if " " not in e.path and "[" not in e.path
}
_SCALAR_ENTRIES = {e.name: e for e in catalogue.scalar_entries()}
_RECONNECT_METRICS = (*STATS, *(n.split(".", 1)[1] for n in _SCALAR_ENTRIES if n.startswith("reconnect.")))
_HARNESS_SERIES = tuple(e.name.split(".")[1] for e in catalogue.CATALOGUE if e.name.startswith("harness."))
_SURVIVAL_FIELDS = ("lower", "upper", "at_risk")
#: A drift ratio compares the last series window with the first: on a run of
#: a few windows that is the spawn against the stop, not a trend.
DRIFT_MIN_WINDOWS = 6

# Outcomes the harness can report. Any other name is accepted (a custom
# profile may add outcomes), but a name that neither this set nor the report
# knows gets a note, so that a misspelt outcome does not read as zero unseen.
KNOWN_OUTCOMES = frozenset(OUTCOMES)


def _forms() -> str:
    """The metric forms for an error message, from the catalogue (``sessions.started|open``)."""
    groups: dict[str, list[str]] = {}
    for e in catalogue.CATALOGUE:
        head, _, tail = e.name.rpartition(".")
        if not head or head.islower():
            key, part = (head, tail) if head else (e.name, "")
        else:
            key, part = e.name, ""
        groups.setdefault(key, [])
        if part:
            groups[key].append(part)
    return ", ".join(f"{k}.{'|'.join(v)}" if v else k for k, v in groups.items())


_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")
_MARK_RE = re.compile(r"(\d+)(s|m|h)\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_METRIC_FORMS = _forms() + "; see docs/thresholds.md"

Number = int | float
Measurement = tuple[Number | None, str | None]


class ThresholdError(ConfigError, ValueError):
    """A threshold expression or metric name that cannot be parsed.

    ``str()`` is one line: the expression, what is wrong, and how to fix it.
    """

    def __init__(self, expr: str, problem: str) -> None:
        self.expr = expr
        self.problem = problem
        super().__init__(f'threshold "{expr}": {problem}')


def _one_of(options: Iterable[str]) -> str:
    return "expected one of " + ", ".join(options)


@dataclass(frozen=True)
class Metric:
    """Where a number lives in a report, and how to read it.

    ``name`` is canonical (lower case, ``survival.1h`` becomes ``survival.60m``),
    so two spellings of one metric compare equal.
    """

    name: str
    kind: str
    args: tuple[Any, ...] = ()
    direction: int = +1  # +1 higher is worse, -1 lower is worse, 0 neither
    monotonic: int = 0  # +1 only grows during a run, -1 only shrinks, 0 neither
    #: the catalogue entry (name pattern) this metric belongs to
    family: str = ""

    @property
    def entry(self) -> catalogue.Entry:
        return catalogue.entry(self.family)

    def measure(self, report: Mapping[str, Any]) -> Measurement:
        """Return ``(value, note)``; value ``None`` means no data (see :meth:`vacuous`)."""
        return _MEASURES[self.kind](self, report)

    def vacuous(self, report: Mapping[str, Any]) -> str | None:
        """Why having no data is the good case here, or None (then no data is *not measured*).

        The catalogue says which metrics can hold vacuously; today that is
        the reconnect family, when nothing needed a reconnect.
        """
        if not self.family or self.entry.no_data is not NoData.VACUOUS:
            return None
        attempts = _number(_get(report, ("reconnect", "attempts")))
        if attempts == 0:
            return "holds vacuously (no reconnect attempt: nothing needed one)"
        return None


@dataclass(frozen=True)
class Threshold:
    """One parsed ``METRIC OP NUMBER`` expression."""

    expr: str
    metric: Metric
    op: str
    limit: float

    def check(self, value: Number) -> bool:
        """Whether a measured value satisfies this threshold."""
        return bool(OPERATORS[self.op](value, self.limit))

    def __str__(self) -> str:
        return self.expr


# --------------------------------------------------------------------------
# Parsing


_OP_RE = re.compile(r"[<>=!]+")


def parse(expr: str) -> Threshold:
    """Parse ``METRIC OP NUMBER`` (OP one of < <= > >= == !=).

    Raises :class:`ThresholdError` with a one-line message on any mistake.
    """
    shown = " ".join(str(expr).split())
    if not shown:
        raise ThresholdError(shown, 'empty expression (expected METRIC OP NUMBER, e.g. "auth.p95 < 300")')
    match = _OP_RE.search(shown)
    if match is None:
        raise ThresholdError(
            shown, f"no comparison operator (expected METRIC OP NUMBER with OP one of {', '.join(OPERATORS)})"
        )
    left, op, right = shown[: match.start()].strip(), match.group(), shown[match.end() :].strip()
    if op not in OPERATORS:
        raise ThresholdError(shown, f'unknown operator "{op}" ({_one_of(OPERATORS)})')
    if not left:
        raise ThresholdError(shown, f'missing metric before "{op}" (e.g. "auth.p95 < 300")')
    if not right:
        raise ThresholdError(shown, f'missing number after "{op}" (e.g. "auth.p95 < 300")')
    if _as_number(left) is not None and _as_number(right) is None:
        raise ThresholdError(
            shown, f'the metric must be on the left (write "{right} {_MIRRORED[op]} {left}")'
        )
    limit = _as_number(right)
    if limit is None:
        raise ThresholdError(
            shown,
            f'limit "{right}" is not a finite number '
            "(write a plain number: milliseconds for latencies, a fraction for rates)",
        )
    metric = _parse_metric(left, shown)
    return Threshold(expr=shown, metric=metric, op=op, limit=limit)


def parse_all(exprs: Iterable[str]) -> list[Threshold]:
    """Parse several expressions; the first bad one raises :class:`ThresholdError`."""
    return [parse(e) for e in exprs]


def parse_metric(name: str) -> Metric:
    """Parse a metric name alone (``auth.p95``), as used by ``loadkit compare``."""
    shown = " ".join(str(name).split())
    return _parse_metric(shown, shown)


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _parse_metric(text: str, expr: str) -> Metric:
    name = text.lower()
    parts = name.split(".")

    def fail(problem: str) -> ThresholdError:
        return ThresholdError(expr, problem)

    if name == "bad_frames.count":
        return Metric(name, "bad_frames", (None,), +1, +1, "bad_frames.count")
    if name in _SCALARS:
        path, direction, monotonic = _SCALARS[name]
        return Metric(name, "scalar", path, direction, monotonic, name)

    head = parts[0]
    if head in PHASES:
        if len(parts) == 1:
            raise fail(f'"{head}" needs a statistic (e.g. {head}.p95; {_one_of(STATS)})')
        if len(parts) == 2:
            stat = _check_stat(parts[1], STATS, "statistic", fail)
            return Metric(name, "latency", ("latency_ms", head, stat), *_stat_traits(stat), "PHASE.STAT")
        raise fail(f'unknown metric "{text}" (expected {_METRIC_FORMS})')

    if head == "close":
        return _parse_close(text, parts, fail)
    if head == "outcome":
        return _parse_outcome(text, parts, fail)
    if head == "reconnect":
        if len(parts) != 2 or parts[1] not in _RECONNECT_METRICS:
            what = parts[1] if len(parts) == 2 else ".".join(parts[1:])
            if not what:
                raise fail(f'"reconnect" needs a statistic (e.g. reconnect.p95; {_one_of(_RECONNECT_METRICS)})')
            raise fail(f'unknown reconnect metric "{what}" ({_one_of(_RECONNECT_METRICS)})')
        if parts[1] == "success_rate":
            return Metric(name, "reconnect_success_rate", (), -1, 0, "reconnect.success_rate")
        return Metric(name, "latency", ("reconnect", "recover_ms", parts[1]), *_stat_traits(parts[1]),
                      "reconnect.STAT")
    if head == "harness":
        if len(parts) != 3 or parts[1] not in _HARNESS_SERIES:
            raise fail(f'unknown metric "{text}" (expected harness.SERIES.STAT with SERIES one of '
                       f'{", ".join(_HARNESS_SERIES)}, e.g. harness.lag.p99)')
        stat = _check_stat(parts[2], STATS, "statistic", fail)
        return Metric(name, "latency", ("harness", f"{parts[1]}_ms", stat), *_stat_traits(stat),
                      f"harness.{parts[1]}.STAT")
    if head == "errors":
        if len(parts) != 3 or parts[2] != "count" or not parts[1]:
            raise fail(f'unknown metric "{text}" (expected errors.CODE.count, e.g. errors.4029.count)')
        return Metric(name, "keyed_count", ("errors", parts[1]), +1, +1, "errors.CODE.count")
    if head == "bad_frames":
        if len(parts) == 3 and parts[2] == "count" and parts[1] in BAD_FRAME_KINDS:
            return Metric(name, "bad_frames", (parts[1],), +1, +1, "bad_frames.KIND.count")
        if len(parts) == 3 and parts[2] == "count":
            raise fail(f'unknown bad-frame kind "{parts[1]}" ({_one_of(BAD_FRAME_KINDS)})')
        raise fail(f'unknown metric "{text}" (expected bad_frames.count, bad_frames.sessions '
                   "or bad_frames.KIND.count, e.g. bad_frames.unmatched_answer.count == 0)")
    if head == "survival":
        return _parse_survival(text, parts, fail)
    if head == "drift":
        if len(parts) < 2 or not parts[1]:
            raise fail('"drift" needs a phase and a statistic (e.g. drift.auth.p95 < 1.2)')
        if len(parts) > 3:
            raise fail(f'unknown metric "{text}" (expected drift.PHASE.STAT, e.g. drift.auth.p95)')
        phase = _check_phase(parts[1], fail)
        if len(parts) == 2:
            raise fail(f'"drift.{phase}" needs a statistic (e.g. drift.{phase}.p95 < 1.2; {_one_of(DRIFT_STATS)})')
        stat = _check_stat(parts[2], DRIFT_STATS, "drift statistic", fail)
        return Metric(name, "drift", (phase, stat), +1, 0, "drift.PHASE.STAT")
    family = [n.split(".", 1)[1] for n in _SCALAR_ENTRIES if n.startswith(head + ".")]
    if family:
        what = ".".join(parts[1:])
        if not what:
            raise fail(f'"{head}" needs a metric (e.g. {head}.{family[0]}; {_one_of(family)})')
        raise fail(f'unknown {head} metric "{what}" ({_one_of(family)})')
    if len(parts) == 2 and parts[1] in STATS:
        raise fail(f'unknown latency phase "{head}" ({_one_of(PHASES)})')
    raise fail(f'unknown metric "{text}" (expected {_METRIC_FORMS})')


def _check_stat(stat: str, allowed: tuple[str, ...], what: str, fail: Callable[[str], ThresholdError]) -> str:
    if stat not in allowed:
        raise fail(f'unknown {what} "{stat}" ({_one_of(allowed)})')
    return stat


def _check_phase(phase: str, fail: Callable[[str], ThresholdError]) -> str:
    if phase not in PHASES:
        raise fail(f'unknown latency phase "{phase}" ({_one_of(PHASES)})')
    return phase


def _stat_traits(stat: str) -> tuple[int, int]:
    """(direction, monotonic) of a latency statistic."""
    if stat == "count":
        return 0, +1
    if stat == "max":
        return +1, +1
    if stat == "min":
        return +1, -1
    return +1, 0


def _parse_close(text: str, parts: list[str], fail: Callable[[str], ThresholdError]) -> Metric:
    if len(parts) < 2 or not parts[1]:
        raise fail('"close" needs a close code and .count or .rate (e.g. close.1011.count == 0)')
    raw = parts[1]
    if not raw.isdigit():
        raise fail(f'close code "{raw}" is not a number (expected a WebSocket close code 1000-4999, e.g. close.1011.count)')
    code = int(raw)
    if not 1000 <= code <= 4999:
        raise fail(f'close code "{raw}" is out of range (expected 1000-4999, e.g. close.1011.count)')
    if len(parts) == 2:
        raise fail(f'"close.{code}" needs .count or .rate (e.g. close.{code}.count == 0)')
    if len(parts) > 4:
        raise fail(f'unknown metric "{text}" (expected close.CODE.count|rate or close.CODE.PHASE.count|rate)')
    stat = parts[-1]
    if stat not in ("count", "rate"):
        raise fail(f'unknown close statistic "{stat}" (expected count or rate, e.g. close.{code}.count)')
    phase = parts[2] if len(parts) == 4 else None
    if phase is not None and not _NAME_RE.match(phase):
        raise fail(f'close phase "{phase}" is not a valid name (expected e.g. close.{code}.during_auth.count)')
    canonical = ".".join(["close", str(code), *([phase] if phase else []), stat])
    direction = 0 if code in NEUTRAL_CLOSE_CODES else +1
    family = "close.CODE.PHASE.count" if phase else f"close.CODE.{stat}"
    return Metric(canonical, "close", (code, phase, stat), direction, +1 if stat == "count" else 0, family)


def _parse_outcome(text: str, parts: list[str], fail: Callable[[str], ThresholdError]) -> Metric:
    if len(parts) < 2 or not parts[1]:
        raise fail('"outcome" needs a name and .count or .rate (e.g. outcome.auth_refused.rate < 0.001)')
    outcome = parts[1]
    if not _NAME_RE.match(outcome):
        raise fail(f'outcome name "{outcome}" is not a valid name (expected letters, digits and _, e.g. outcome.auth_refused.count)')
    if len(parts) == 2:
        raise fail(f'"outcome.{outcome}" needs .count or .rate (e.g. outcome.{outcome}.rate < 0.001)')
    if len(parts) > 3:
        raise fail(f'unknown metric "{text}" (expected outcome.NAME.count or outcome.NAME.rate)')
    stat = parts[2]
    if stat not in ("count", "rate"):
        raise fail(f'unknown outcome statistic "{stat}" (expected count or rate, e.g. outcome.{outcome}.rate)')
    return Metric(f"outcome.{outcome}.{stat}", "outcome", (outcome, stat), outcome_direction(outcome),
                  +1 if stat == "count" else 0, f"outcome.NAME.{stat}")


def _parse_survival(text: str, parts: list[str], fail: Callable[[str], ThresholdError]) -> Metric:
    if len(parts) < 2 or not parts[1]:
        raise fail('"survival" needs a mark (e.g. survival.30m > 0.99)')
    if len(parts) > 3 or (len(parts) == 3 and parts[2] not in _SURVIVAL_FIELDS):
        raise fail(f'unknown metric "{text}" (expected survival.MARK or survival.MARK.lower|upper|at_risk, '
                   "e.g. survival.30m, survival.5m.lower)")
    seconds = mark_seconds(parts[1])
    if seconds is None:
        raise fail(f'survival mark "{parts[1]}" is not a duration (expected a number with s, m or h, e.g. 90s, 5m, 1h)')
    if seconds <= 0:
        raise fail(f'survival mark "{parts[1]}" must be longer than zero (e.g. survival.30m)')
    field = parts[2] if len(parts) == 3 else "estimate"
    suffix = "" if field == "estimate" else f".{field}"
    family = "survival.MARK" if field == "estimate" else (
        "survival.MARK.at_risk" if field == "at_risk" else "survival.MARK.lower")
    direction = -1 if field != "upper" else 0
    return Metric(f"survival.{format_mark(seconds)}{suffix}", "survival", (seconds, field), direction,
                  -1 if field == "at_risk" else 0, family)


def mark_seconds(mark: str) -> int | None:
    """``"90s"`` -> 90, ``"5m"`` -> 300, ``"1h"`` -> 3600; ``None`` if not a mark."""
    match = _MARK_RE.match(str(mark).strip().lower())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_mark(seconds: int) -> str:
    """The canonical spelling of a survival mark, as the report writes them: 90s, 5m, 60m."""
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


# --------------------------------------------------------------------------
# Measuring


def _number(value: Any) -> Number | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _get(report: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _not_measured(where: str) -> Measurement:
    return None, f"not measured ({where})"


def _measure_path(report: Mapping[str, Any], path: tuple[str, ...]) -> Measurement:
    value = _number(_get(report, path))
    if value is None:
        return _not_measured(f"{'.'.join(path)} is missing or null")
    return value, None


def _measure_scalar(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    return _measure_path(report, metric.args)


def _measure_latency(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    return _measure_path(report, metric.args)


def _measure_keyed_count(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    section, key = metric.args
    table = report.get(section)
    if not isinstance(table, Mapping):
        return _not_measured(f"{section} is missing")
    value = _number(table.get(key, 0))
    return (value, None) if value is not None else _not_measured(f"{section}.{key} is not a number")


def _measure_bad_frames(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    """``bad_frames.count`` or ``bad_frames.KIND.count``; reads ``{count, by_kind}`` or a bare {kind: n}."""
    (kind,) = metric.args
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
    started = _number(_get(report, ("sessions", "started")))
    if not started:
        return _not_measured("no sessions started to divide by")
    return count / started, note


def _measure_close(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    code, phase, stat = metric.args
    rows = report.get("close_codes")
    if not isinstance(rows, list):
        return _not_measured("close_codes is missing")
    total: Number = 0
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        try:
            row_code = int(row.get("code"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if row_code != code or (phase is not None and row.get("phase") != phase):
            continue
        total += _number(row.get("count")) or 0
    return _per_started(total, None, stat, report)


def _measure_outcome(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    outcome, stat = metric.args
    outcomes = _get(report, ("sessions", "outcomes"))
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


def _measure_reconnect_success_rate(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    attempts = _number(_get(report, ("reconnect", "attempts")))
    successes = _number(_get(report, ("reconnect", "successes")))
    if attempts is None or successes is None:
        return _not_measured("reconnect.attempts or reconnect.successes is missing")
    if attempts == 0:
        return _not_measured("no reconnect attempts")
    return successes / attempts, None


def _measure_survival(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    """A Kaplan-Meier figure at a mark: the estimate, a CI bound, or the number at risk.

    Nobody at risk at the mark means nothing was observed there: not measured
    (a 0 % read off an empty risk set would be a fiction). Older reports with
    ``reached``/``eligible`` only are read as their naive share.
    """
    seconds, field = metric.args
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


def _measure_drift(metric: Metric, report: Mapping[str, Any]) -> Measurement:
    phase, stat = metric.args
    windows = _number(_get(report, ("drift", "windows")))
    if windows is not None and windows < DRIFT_MIN_WINDOWS:
        return _not_measured(f"drift needs a run of at least {DRIFT_MIN_WINDOWS} series windows, "
                             f"this one had {windows:g}")
    first = _number(_get(report, ("drift", "first", phase, stat)))
    last = _number(_get(report, ("drift", "last", phase, stat)))
    if first is None or last is None:
        return _not_measured(f"drift.first or drift.last has no {phase}.{stat}")
    if first <= 0:
        return _not_measured(f"drift.first.{phase}.{stat} is {first}, cannot divide by it")
    return last / first, None


_MEASURES: dict[str, Callable[[Metric, Mapping[str, Any]], Measurement]] = {
    "scalar": _measure_scalar,
    "latency": _measure_latency,
    "keyed_count": _measure_keyed_count,
    "bad_frames": _measure_bad_frames,
    "close": _measure_close,
    "outcome": _measure_outcome,
    "reconnect_success_rate": _measure_reconnect_success_rate,
    "survival": _measure_survival,
    "drift": _measure_drift,
}


# --------------------------------------------------------------------------
# Evaluating


def _prepared(thresholds: Iterable[Threshold | str]) -> list[Threshold]:
    return [t if isinstance(t, Threshold) else parse(t) for t in thresholds]


#: A threshold row's ``status``: the four things a gate can be at the end of a run.
STATUSES = ("pass", "fail", "not_measured", "vacuous")


def _row(threshold: Threshold, value: Number | None, passed: bool | None, note: str | None,
         status: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "expr": threshold.expr,
        "metric": threshold.metric.name,
        "op": threshold.op,
        "limit": threshold.limit,
        "value": value,
        "passed": passed,
        "status": status,
    }
    if note:
        row["note"] = note
    return row


def evaluate(thresholds: Iterable[Threshold | str], report: Mapping[str, Any]) -> list[dict[str, Any]]:
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
    for threshold in _prepared(thresholds):
        value, note = threshold.metric.measure(report)
        if value is not None:
            ok = threshold.check(value)
            rows.append(_row(threshold, value, ok, note, "pass" if ok else "fail"))
            continue
        why = threshold.metric.vacuous(report)
        if why is not None:
            rows.append(_row(threshold, None, True, why, "vacuous"))
        else:
            rows.append(_row(threshold, None, None, note, "not_measured"))
    return rows


def _settled(threshold: Threshold, value: Number) -> bool:
    """True when no later value of a monotonic metric can change the result."""
    op, limit, trend = threshold.op, threshold.limit, threshold.metric.monotonic
    if trend > 0:  # later values lie in [value, +inf)
        return value >= limit if op in ("<", ">=") else value > limit
    if trend < 0:  # later values lie in (-inf, value]
        return value <= limit if op in ("<=", ">") else value < limit
    return False


def evaluate_partial(thresholds: Iterable[Threshold | str], report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Evaluate thresholds on a live, in-progress report (for ``--abort-on-breach``).

    The report has the final report's shape, cumulative since the run began.
    Rows are those of :func:`evaluate` with two differences:

    - a metric not measured *yet* gives ``passed: None`` (undecided), never False;
    - ``"settled": True`` when the result can no longer change as the run goes
      on: a count that only grows (``close.1011.count == 0`` once a 1011 came),
      a ``max`` already above its limit, a ``min`` already below.

    The caller decides how to act: abort at once on a settled breach, and on an
    unsettled one only after its own grace time. Nothing here has side effects;
    pass pre-parsed :class:`Threshold` objects to keep each call cheap.
    """
    rows = []
    for threshold in _prepared(thresholds):
        value, note = threshold.metric.measure(report)
        if value is None:
            row = _row(threshold, None, None, note, "not_measured")
            row["settled"] = False
        else:
            ok = threshold.check(value)
            row = _row(threshold, value, ok, note, "pass" if ok else "fail")
            row["settled"] = _settled(threshold, value)
        rows.append(row)
    return rows
