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

A metric *regresses* when it moves the bad way by more than its limit
(:mod:`loadkit.report.compare_limits`: defaults, ``--limit METRIC=VALUE``
with globs, ``METRIC=off``) *and* by more than the two runs' own noise
(:mod:`loadkit.report.compare_noise`: percentile intervals, binomial and
Poisson bounds, Kaplan-Meier intervals, sample minimums, the latency floor).
A metric one run did not measure is shown (``missing``/``new``), never a
regression: gating on data collection is the thresholds' job (*not
measured*). The rows and their rendering are in
:mod:`loadkit.report.compare_table`; this module enumerates the metrics,
judges each and runs the command line.

Like the rest of the package this is pure except for :func:`main`, which reads
the two files and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from loadkit.errors import ConfigError, UsageError
from loadkit.report.catalogue import CATALOGUE, PHASES
from loadkit.report.compare_limits import (
    DEFAULT_LIMITS,
    Limit,
    LimitError,
    coerce_limit,
    lookup,
    parse_limit,
    parse_limits,
)
from loadkit.report.compare_noise import DEFAULT_LATENCY_FLOOR_MS, harness_slowdown, within_noise
from loadkit.report.compare_table import DIRECTIONS, Change, Comparison
from loadkit.report.exitcodes import ExitCode
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

_LATENCY_STATS = ("p50", "p95", "p99", "max")
_RECONNECT_METRICS = ("reconnect.p95", "reconnect.success_rate")
_SCALAR_METRICS = ("drop_rate", "drops_per_session_hour")
_CONTEXT_METRICS = ("sessions.started",)


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



def _change(metric: Metric, baseline: Mapping[str, Any], candidate: Mapping[str, Any], limit: Limit | None,
            floor_ms: float = DEFAULT_LATENCY_FLOOR_MS, noise: bool = True) -> Change | None:
    before, _ = metric.measure(baseline)
    after, _ = metric.measure(candidate)
    direction = DIRECTIONS[metric.direction]
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
    worsening = abs(absolute) if metric.direction == 0 else absolute * metric.direction
    regression = limit is not None and limit.exceeded(worsening, before)
    why = within_noise(metric, baseline, candidate, worsening, floor_ms, limit) if regression and noise else None
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
    user = dict(coerce_limit(k, v) for k, v in (limits or {}).items())
    changes = []
    for metric in _metrics(baseline, candidate):
        found, limit = lookup(metric.name, user)
        if not found and defaults:
            _, limit = lookup(metric.name, DEFAULT_LIMITS)
        change = _change(metric, baseline, candidate, limit, floor_ms, noise)
        if change is not None:
            changes.append(change)
    return Comparison(tuple(changes))


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

    try:
        _print_comparison(comparison, baseline, candidate, noise=not args.no_noise)
    except BrokenPipeError:
        # The reader left (``loadkit compare … | head``): the verdict stands, and
        # what nobody read is not an error. Later writes (the exit's flush) go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return int(comparison.exit_code)


def _print_comparison(comparison: Comparison, baseline: dict[str, Any], candidate: dict[str, Any],
                      noise: bool) -> None:
    for role, report in (("baseline", baseline), ("candidate", candidate)):
        verdict = report.get("verdict")
        if verdict not in (None, "pass", "fail"):
            print(f"note: the {role} run's verdict is {verdict!r}: its figures may not be comparable")
    slowdown = harness_slowdown(baseline, candidate)
    if slowdown > 1.0 and noise:
        lags = [report["harness"]["lag_ms"] for report in (baseline, candidate)]
        shown = ", ".join(f"{stat} {lags[0].get(stat)} -> {lags[1].get(stat)} ms" for stat in ("p50", "p95"))
        print(f"note: the candidate's harness woke up {slowdown:.2f}x later than the baseline's (timer lag {shown}): "
              "its latencies are judged against the baseline's scaled by that ('harness lag' where that explains "
              "the change)")
    print(comparison.format_table())
    print(comparison.summary(), flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
