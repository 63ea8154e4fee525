"""Metric names (``auth.p95``, ``close.1011.count``, ``survival.30m``) parsed to a :class:`Metric`.

Why apart from the expression: ``loadkit compare`` names metrics without an
operator, and the live abort check reuses parsed metrics on every report, so
the grammar of a *name* stands alone. A :class:`Metric` is a small frozen
value that knows where its number lives in a report (:meth:`Metric.measure`,
through the readers in measure.py), whether a larger value is worse (used by
``loadkit compare``) and whether it can only grow while a run goes on (used
to settle a breach early, breach.py).

Every name, family and direction comes from :mod:`loadkit.report.catalogue`:
no private lists. A name that does not parse raises :class:`ThresholdError`
with one line that says what was expected. Pure.
"""

from __future__ import annotations

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
    PHASES,
    STATS,
    NoData,
    outcome_direction,
)
from loadkit.report.thresholds.marks import format_mark, mark_seconds
from loadkit.report.thresholds.measure import MEASURES, Measurement, number_at

__all__ = ["METRIC_FORMS", "Metric", "ThresholdError", "parse_metric"]

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
#: The metric forms an error message lists, from the catalogue.
METRIC_FORMS = _forms() + "; see docs/thresholds.md"


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
        return MEASURES[self.kind](self.args, report)

    def vacuous(self, report: Mapping[str, Any]) -> str | None:
        """Why having no data is the good case here, or None (then no data is *not measured*).

        The catalogue says which metrics can hold vacuously; today that is
        the reconnect family, when nothing needed a reconnect.
        """
        if not self.family or self.entry.no_data is not NoData.VACUOUS:
            return None
        attempts = number_at(report, ("reconnect", "attempts"))
        if attempts == 0:
            return "holds vacuously (no reconnect attempt: nothing needed one)"
        return None


def parse_metric(name: str, expr: str | None = None) -> Metric:
    """Parse a metric name (``auth.p95``): alone, as ``loadkit compare`` does, or as part of ``expr``.

    A mistake raises :class:`ThresholdError` quoting ``expr`` (the whole
    threshold expression) when given, else the name.
    """
    shown = " ".join(str(name).split())
    return _parse_metric(shown, shown if expr is None else expr)


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
        raise fail(f'unknown metric "{text}" (expected {METRIC_FORMS})')

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
    raise fail(f'unknown metric "{text}" (expected {METRIC_FORMS})')


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
        raise fail(f'close code "{raw}" is not a number '
                   "(expected a WebSocket close code 1000-4999, e.g. close.1011.count)")
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
        raise fail(f'outcome name "{outcome}" is not a valid name '
                   "(expected letters, digits and _, e.g. outcome.auth_refused.count)")
    if len(parts) == 2:
        raise fail(f'"outcome.{outcome}" needs .count or .rate (e.g. outcome.{outcome}.rate < 0.001)')
    unexpected = len(parts) == 4 and parts[2] == "unexpected"
    if len(parts) > 3 and not unexpected:
        raise fail(f'unknown metric "{text}" (expected outcome.NAME.count, outcome.NAME.rate '
                   "or outcome.NAME.unexpected.count|rate)")
    stat = parts[-1]
    if stat not in ("count", "rate"):
        raise fail(f'unknown outcome statistic "{stat}" (expected count or rate, e.g. outcome.{outcome}.rate)')
    middle = ".unexpected" if unexpected else ""
    return Metric(f"outcome.{outcome}{middle}.{stat}", "outcome", (outcome, stat, unexpected),
                  outcome_direction(outcome), +1 if stat == "count" and not unexpected else 0,
                  f"outcome.NAME{middle}.{stat}")


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
