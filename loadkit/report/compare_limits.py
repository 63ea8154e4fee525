"""Limits of ``loadkit compare``: how far a metric may move the bad way, and the defaults.

Why apart from the comparison: a limit is user input (``--limit
METRIC=VALUE``, globs allowed) with its own grammar and one-line errors, and
the defaults are policy a reader looks up on their own. A limit is relative
(``20%``: more than 20 % of the baseline value) or absolute (``0.005``: more
than 0.005 in the metric's own unit); ``METRIC=off`` removes one. Pure.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loadkit.errors import ConfigError
from loadkit.report.catalogue import PHASES
from loadkit.report.thresholds import ThresholdError, parse_metric

__all__ = ["DEFAULT_LIMITS", "Limit", "LimitError", "coerce_limit", "lookup", "parse_limit", "parse_limits"]

_GLOB_CHARS = frozenset("*?[")


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
            return f"{self.value * 100:.6g}%"
        return f"{self.value:.6g}"

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


def coerce_limit(pattern: str, value: Limit | str | float | None) -> tuple[str, Limit | None]:
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


def lookup(metric: str, limits: Mapping[str, Limit | None]) -> tuple[bool, Limit | None]:
    """(found, limit): an exact name first, then the last matching pattern."""
    if metric in limits:
        return True, limits[metric]
    found, result = False, None
    for pattern, limit in limits.items():
        if _GLOB_CHARS & set(pattern) and fnmatch.fnmatchcase(metric, pattern):
            found, result = True, limit
    return found, result

