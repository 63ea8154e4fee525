"""Threshold expressions, ``METRIC OP NUMBER``: parsed once, when the command line is read.

Why parse early: a typo must fail in the first second of a soak, not after
it. :func:`parse` checks the whole grammar (operator, the metric on the left,
a finite limit on the right) and hands the metric name to names.py; every
mistake is a :class:`ThresholdError` whose one line says how to write it. Pure.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from loadkit.report.thresholds.measure import Number
from loadkit.report.thresholds.names import Metric, ThresholdError, parse_metric

__all__ = ["OPERATORS", "Threshold", "parse", "parse_all"]

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
_OP_RE = re.compile(r"[<>=!]+")


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
        raise ThresholdError(shown, f'unknown operator "{op}" (expected one of {", ".join(OPERATORS)})')
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
    metric = parse_metric(left, shown)
    return Threshold(expr=shown, metric=metric, op=op, limit=limit)


def parse_all(exprs: Iterable[str]) -> list[Threshold]:
    """Parse several expressions; the first bad one raises :class:`ThresholdError`."""
    return [parse(e) for e in exprs]


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
