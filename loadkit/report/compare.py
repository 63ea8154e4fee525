"""``loadkit compare BASELINE.json CANDIDATE.json``: did the candidate run regress?

Theory of operation
-------------------
Both reports are read through the same metric names as thresholds
(:mod:`loadkit.report.thresholds`), so ``auth.p95`` means one thing everywhere.
:func:`compare` lists every metric either report measured, with both values,
the absolute and relative change, and whether the change goes the bad way:
higher is worse for latencies, drops and failure outcomes; lower is worse for
survival, reconnect success and normal closes; some metrics (sessions started,
close code 1000, sessions stopped by the harness) have no bad way at all.

A metric *regresses* when it moves the bad way by more than its limit. A limit
is relative (``20%``: more than 20 % of the baseline value) or absolute
(``0.005``: more than 0.005 in the metric's own unit). Defaults are in
:data:`DEFAULT_LIMITS`; user limits (``--limit METRIC=VALUE``, globs allowed)
take precedence, and ``METRIC=off`` removes a limit. A metric that has a
limit, was measured in the baseline and is missing from the candidate counts as
a regression: a gate on data that was not collected must not pass silently.

Like the rest of the package this is pure except for :func:`main`, which reads
the two files and prints.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from loadkit.errors import ConfigError, UsageError
from loadkit.report.exitcodes import ExitCode
from loadkit.report.catalogue import CATALOGUE, PHASES
from loadkit.report.thresholds import Metric, ThresholdError, parse_metric

__all__ = [
    "DEFAULT_LIMITS",
    "Change",
    "Comparison",
    "Limit",
    "LimitError",
    "compare",
    "main",
    "parse_limit",
    "parse_limits",
]

HIGHER_IS_WORSE = "higher_is_worse"
LOWER_IS_WORSE = "lower_is_worse"
NEUTRAL = "neutral"
_DIRECTIONS = {+1: HIGHER_IS_WORSE, -1: LOWER_IS_WORSE, 0: NEUTRAL}
_GLOB_CHARS = frozenset("*?[")
_LATENCY_STATS = ("p50", "p95", "p99", "max")
_RECONNECT_METRICS = ("reconnect.p95", "reconnect.success_rate")
_SCALAR_METRICS = ("drop_rate", "drops_per_session_hour")
_CONTEXT_METRICS = ("sessions.started",)


class LimitError(ConfigError, ValueError):
    """A ``METRIC=VALUE`` limit that cannot be parsed; ``str()`` is one line."""


@dataclass(frozen=True)
class Limit:
    """How far a metric may move the bad way before it is a regression.

    ``value`` is a fraction of the baseline when ``relative`` (0.2 for 20 %),
    else an amount in the metric's own unit. The sign is irrelevant: the
    direction comes from the metric.
    """

    value: float
    relative: bool

    def __str__(self) -> str:
        if self.relative:
            return f"{_trim(self.value * 100)}%"
        return _trim(self.value)

    def exceeded(self, worsening: float, baseline: float) -> bool:
        """Whether moving ``worsening`` the bad way from ``baseline`` is beyond this limit."""
        allowed = self.value * abs(baseline) if self.relative else self.value
        # A tiny tolerance, so that 0.010 -> 0.015 is "at" a 0.005 limit, not past it.
        return worsening > allowed + 1e-9 * max(abs(allowed), abs(baseline), 1e-300)


# Applied unless a user limit (or METRIC=off) says otherwise.
DEFAULT_LIMITS: dict[str, Limit] = {
    **{f"{phase}.{stat}": Limit(0.20, True) for phase in PHASES for stat in ("p50", "p95", "p99")},
    "drop_rate": Limit(0.005, False),
    "drops_per_session_hour": Limit(0.5, False),
    "survival.*": Limit(0.01, False),
}


@dataclass(frozen=True)
class Change:
    """One metric in both runs."""

    metric: str
    baseline: float | None
    candidate: float | None
    absolute: float | None  # candidate - baseline
    relative: float | None  # absolute / |baseline|; None when baseline is 0 or missing
    direction: str  # higher_is_worse | lower_is_worse | neutral
    limit: Limit | None
    regression: bool
    status: str  # regression | missing | new | worse | better | changed | same

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "absolute_change": self.absolute,
            "relative_change": self.relative,
            "direction": self.direction,
            "limit": None if self.limit is None else str(self.limit),
            "regression": self.regression,
            "status": self.status,
        }


@dataclass(frozen=True)
class Comparison:
    """Every compared metric, in a stable order."""

    changes: tuple[Change, ...]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.THRESHOLDS_BREACHED if self.regressions else ExitCode.PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "regressions": [c.metric for c in self.regressions],
            "exit_code": int(self.exit_code),
            "metrics": [c.to_dict() for c in self.changes],
        }

    def format_table(self) -> str:
        """An aligned plain-text table: metric, baseline, candidate, change, limit, status."""
        header = ("metric", "baseline", "candidate", "change", "limit", "status")
        rows = [header]
        for c in self.changes:
            rows.append(
                (
                    c.metric,
                    _fmt(c.baseline),
                    _fmt(c.candidate),
                    _fmt_change(c),
                    "-" if c.limit is None else _fmt_limit(c.limit, c.direction),
                    c.status.upper() if c.regression else c.status,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = []
        for row in rows:
            cells = [
                cell.ljust(widths[i]) if i in (0, 5) else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: how many regressions, and which."""
        regressions = self.regressions
        if not regressions:
            return f"no regression beyond limits ({len(self.changes)} metrics compared)"
        names = ", ".join(c.metric for c in regressions)
        noun = "regression" if len(regressions) == 1 else "regressions"
        return f"{len(regressions)} {noun} beyond limits: {names}"


# --------------------------------------------------------------------------
# Limits


def parse_limit(text: str) -> tuple[str, Limit | None]:
    """Parse ``METRIC=VALUE``: ``auth.p95=20%``, ``drop_rate=0.005``, ``*.p99=30%``, ``auth.p95=off``.

    Returns ``(pattern, limit)``, limit ``None`` for ``off``. A metric name
    without glob characters is checked against the threshold grammar and
    returned in canonical form. Raises :class:`LimitError`.
    """
    shown = " ".join(str(text).split())
    if "=" not in shown:
        raise LimitError(f'limit "{shown}": expected METRIC=VALUE (e.g. auth.p95=20% or drop_rate=0.005)')
    name, _, raw = (part.strip() for part in shown.partition("="))
    if not name:
        raise LimitError(f'limit "{shown}": missing metric before "=" (e.g. auth.p95=20%)')
    if not raw:
        raise LimitError(f'limit "{shown}": missing value after "=" (e.g. {name}=20% or {name}=0.005)')
    pattern = name.lower()
    if not (_GLOB_CHARS & set(pattern)):
        try:
            pattern = parse_metric(pattern).name
        except ThresholdError as exc:
            raise LimitError(f'limit "{shown}": {exc.problem}') from None
    if raw.lower() in ("off", "none"):
        return pattern, None
    relative = raw.endswith("%")
    number = raw[:-1].strip() if relative else raw
    try:
        value = abs(float(number))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LimitError(
            f'limit "{shown}": value "{raw}" is not a number or a percentage '
            f"(e.g. {name}=20% for relative, {name}=0.005 for absolute, {name}=off)"
        )
    return pattern, Limit(value / 100 if relative else value, relative)


def parse_limits(texts: Iterable[str]) -> dict[str, Limit | None]:
    """Parse several ``METRIC=VALUE`` strings; later ones override earlier ones."""
    limits: dict[str, Limit | None] = {}
    for text in texts:
        pattern, limit = parse_limit(text)
        limits.pop(pattern, None)  # keep the order of the last definition
        limits[pattern] = limit
    return limits


def _coerce_limit(pattern: str, value: Limit | str | float | None) -> tuple[str, Limit | None]:
    if isinstance(value, Limit) or value is None:
        name = pattern.lower()
        if not (_GLOB_CHARS & set(name)):
            try:
                name = parse_metric(name).name
            except ThresholdError as exc:
                raise LimitError(f'limit "{pattern}": {exc.problem}') from None
        return name, value
    if isinstance(value, bool):
        raise LimitError(f'limit "{pattern}": value {value!r} is not a number or a percentage')
    return parse_limit(f"{pattern}={value}")


def _lookup(metric: str, limits: Mapping[str, Limit | None]) -> tuple[bool, Limit | None]:
    """(found, limit): an exact name first, then the last matching pattern."""
    if metric in limits:
        return True, limits[metric]
    found, result = False, None
    for pattern, limit in limits.items():
        if _GLOB_CHARS & set(pattern) and fnmatch.fnmatchcase(metric, pattern):
            found, result = True, limit
    return found, result


# --------------------------------------------------------------------------
# Comparing


def _metric_names(report: Mapping[str, Any]) -> list[str]:
    """Every comparable metric this report has data for."""
    names: list[str] = []
    latency = report.get("latency_ms")
    if isinstance(latency, Mapping):
        for phase in PHASES:
            if isinstance(latency.get(phase), Mapping):
                names.extend(f"{phase}.{stat}" for stat in _LATENCY_STATS)
    names.extend(_SCALAR_METRICS)
    sessions = report.get("sessions")
    outcomes = sessions.get("outcomes") if isinstance(sessions, Mapping) else None
    if isinstance(outcomes, Mapping):
        names.extend(f"outcome.{name}.rate" for name in outcomes if isinstance(name, str))
    close_codes = report.get("close_codes")
    if isinstance(close_codes, list):
        for row in close_codes:
            try:
                names.append(f"close.{int(row['code'])}.rate")
            except (TypeError, ValueError, KeyError):
                continue
    if isinstance(report.get("reconnect"), Mapping):
        names.extend(_RECONNECT_METRICS)
    survival = report.get("survival")
    if isinstance(survival, Mapping):
        names.extend(f"survival.{key}" for key in survival if isinstance(key, str))
    names.extend(_CONTEXT_METRICS)
    return names


_FAMILY_ORDER = {e.name: i for i, e in enumerate(CATALOGUE)}


def _order_key(metric: Metric) -> tuple[Any, ...]:
    """Catalogue order: latencies by phase and statistic, then the catalogue's families."""
    if metric.family == "PHASE.STAT":
        _, phase, stat = metric.args
        return (0, PHASES.index(phase), _LATENCY_STATS.index(stat) if stat in _LATENCY_STATS else 9)
    if metric.name in _CONTEXT_METRICS:
        return (9, metric.name)
    rank = _FAMILY_ORDER.get(metric.family, len(_FAMILY_ORDER))
    first = metric.args[0] if metric.args and isinstance(metric.args[0], int) else 0
    return (1, rank, first, metric.name)


def _metrics(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[Metric]:
    seen: dict[str, Metric] = {}
    for name in [*_metric_names(baseline), *_metric_names(candidate)]:
        try:
            metric = parse_metric(name)
        except ThresholdError:
            continue  # an odd key in a report (say, survival "soon"): nothing to compare
        seen.setdefault(metric.name, metric)
    return sorted(seen.values(), key=_order_key)


#: Latency changes smaller than this (ms) are never regressions by default (--latency-floor).
DEFAULT_LATENCY_FLOOR_MS = 5.0
#: A percentile needs this many samples beyond it (n·(1-q)) in each run to be compared.
MIN_TAIL_SAMPLES = 5
#: A rate needs this many sessions under it in each run.
MIN_SESSIONS = 20
_Z95 = 1.959963984540054


def _get(report: Mapping[str, Any], *path: str) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _within_noise(metric: Metric, baseline: Mapping[str, Any], candidate: Mapping[str, Any],
                  worsening: float, floor_ms: float) -> str | None:
    """Why a change beyond its limit is still not a regression ("noise", "too few samples"), or None.

    Latency percentiles: each run's distribution-free interval
    (``latency_ms.PHASE.ci``, order statistics) must not overlap, the change
    must exceed the absolute floor, and both runs need enough samples in the
    tail. Rates of sessions: a two-proportion (binomial) bound. Drops per
    session-hour: a Poisson bound. Survival: the Kaplan-Meier intervals.
    """
    family = metric.family
    if family in ("PHASE.STAT", "reconnect.STAT"):
        if worsening <= floor_ms:
            return "below floor"
        stat = metric.args[-1]
        if family == "PHASE.STAT" and stat.startswith("p"):
            q = float(stat[1:]) / 100.0
            phase = metric.args[1]
            for report in (baseline, candidate):
                n = _get(report, "latency_ms", phase, "count") or 0
                if n * (1 - q) < MIN_TAIL_SAMPLES:
                    return "too few samples"
            b = _get(baseline, "latency_ms", phase, "ci", stat)
            c = _get(candidate, "latency_ms", phase, "ci", stat)
            if isinstance(b, list) and isinstance(c, list) and None not in (*b, *c):
                overlap = c[0] <= b[1] if metric.direction > 0 else c[1] >= b[0]
                if overlap:
                    return "noise"
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


def _change(metric: Metric, baseline: Mapping[str, Any], candidate: Mapping[str, Any], limit: Limit | None,
            floor_ms: float = DEFAULT_LATENCY_FLOOR_MS, noise: bool = True) -> Change | None:
    before, _ = metric.measure(baseline)
    after, _ = metric.measure(candidate)
    direction = _DIRECTIONS[metric.direction]
    if before is None and after is None:
        return None
    if before is None or after is None:
        missing = after is None
        return Change(
            metric.name, before, after, None, None, direction, limit,
            regression=False,  # a metric one run did not measure is shown, never a regression
            status="missing" if missing else "new",
        )
    absolute = after - before
    relative = absolute / abs(before) if before else (0.0 if absolute == 0 else None)
    if metric.direction == 0:
        worsening = abs(absolute)
    else:
        worsening = absolute * metric.direction
    regression = limit is not None and limit.exceeded(worsening, before)
    why = _within_noise(metric, baseline, candidate, worsening, floor_ms) if regression and noise else None
    if why is not None:
        regression = False
    if regression:
        status = "regression"
    elif why is not None:
        status = why
    elif absolute == 0:
        status = "same"
    elif metric.direction == 0:
        status = "changed"
    else:
        status = "worse" if worsening > 0 else "better"
    return Change(metric.name, before, after, absolute, relative, direction, limit, regression, status)


def compare(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    limits: Mapping[str, Limit | str | float | None] | None = None,
    *,
    defaults: bool = True,
    floor_ms: float = DEFAULT_LATENCY_FLOOR_MS,
    noise: bool = True,
) -> Comparison:
    """Compare two reports metric by metric.

    ``limits`` maps a metric name or glob pattern to a :class:`Limit`, a string
    (``"20%"`` relative, ``"0.005"`` absolute, ``"off"``), a float (absolute)
    or ``None`` (no limit). An exact name wins over patterns; among patterns
    the last matching one wins; user limits win over :data:`DEFAULT_LIMITS`
    (left out entirely with ``defaults=False``). Raises :class:`LimitError` on
    a bad limit.
    """
    user = dict(_coerce_limit(k, v) for k, v in (limits or {}).items())
    changes = []
    for metric in _metrics(baseline, candidate):
        found, limit = _lookup(metric.name, user)
        if not found and defaults:
            _, limit = _lookup(metric.name, DEFAULT_LIMITS)
        change = _change(metric, baseline, candidate, limit, floor_ms, noise)
        if change is not None:
            changes.append(change)
    return Comparison(tuple(changes))


# --------------------------------------------------------------------------
# Formatting


def _trim(value: float) -> str:
    return f"{value:.6g}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def _signed(value: float) -> str:
    text = _fmt(value)
    return text if text.startswith("-") else "+" + text


def _fmt_change(change: Change) -> str:
    if change.absolute is None:
        return "-"
    if change.absolute == 0:
        return "0"
    if change.relative is None:
        return f"{_signed(change.absolute)} (from 0)"
    return f"{_signed(change.absolute)} ({change.relative * 100:+.1f}%)"


def _fmt_limit(limit: Limit, direction: str) -> str:
    sign = {HIGHER_IS_WORSE: "+", LOWER_IS_WORSE: "-"}.get(direction, "±")
    return sign + str(limit)


# --------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="loadkit compare",
        description="Compare a candidate loadkit report with a baseline and fail on regressions.",
        epilog="Exit status: 0 no regression beyond a limit, 3 at least one, 2 bad input.",
    )
    parser.add_argument("baseline", metavar="BASELINE.json", help="report of the reference run")
    parser.add_argument("candidate", metavar="CANDIDATE.json", help="report of the run under test")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="allowed worsening: 20%% (relative) or 0.005 (absolute) or off; METRIC may be a glob "
        "such as '*.p99'; repeatable, later ones win",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the comparison as JSON to OUT")
    parser.add_argument("--no-default-limits", action="store_true", help="apply only the --limit options")
    parser.add_argument("--no-noise", action="store_true",
                        help="judge changes by their limits alone (no noise bounds, floor or sample minimum)")
    parser.add_argument("--latency-floor", type=float, default=DEFAULT_LATENCY_FLOOR_MS, metavar="MS",
                        help="latency changes up to MS milliseconds are never regressions (default %(default)g)")
    return parser


def _load(path: str, role: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {role} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{role} {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{role} {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{role} {path} is not a loadkit report (expected a JSON object)")
    missing = [k for k in ("sessions", "latency_ms") if not isinstance(data.get(k), dict)]
    if missing:
        raise ConfigError(f"{role} {path} is not a loadkit report (no {', '.join(missing)}; "
                          "write one with --loadkit-report)")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """``loadkit compare BASELINE.json CANDIDATE.json [--limit METRIC=VALUE ...] [--json OUT]``."""
    parser = _build_parser()
    try:
        try:
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        limits = parse_limits(args.limit)
        baseline = _load(args.baseline, "baseline")
        candidate = _load(args.candidate, "candidate")
        comparison = compare(baseline, candidate, limits, defaults=not args.no_default_limits,
                             floor_ms=args.latency_floor, noise=not args.no_noise)
        if args.json:
            try:
                with open(args.json, "w", encoding="utf-8") as handle:
                    json.dump(comparison.to_dict(), handle, indent=2)
                    handle.write("\n")
            except OSError as exc:
                raise ConfigError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        print(f"loadkit compare: error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)

    for role, report in (("baseline", baseline), ("candidate", candidate)):
        verdict = report.get("verdict")
        if verdict not in (None, "pass", "fail"):
            print(f"note: the {role} run's verdict is {verdict!r}: its figures may not be comparable")
    print(comparison.format_table())
    print(comparison.summary())
    return int(comparison.exit_code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
