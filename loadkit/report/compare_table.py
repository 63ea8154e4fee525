"""What ``loadkit compare`` found, and how it is shown: one ``Change`` per metric, the table, the JSON.

Why apart from the comparison: the rendering (aligned columns, signed
changes, limits with the bad direction's sign) and the JSON shape are what
users and pipelines read; the comparison only fills in ``Change`` rows. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loadkit.report.compare_limits import Limit
from loadkit.report.exitcodes import ExitCode

__all__ = ["DIRECTIONS", "HIGHER_IS_WORSE", "LOWER_IS_WORSE", "NEUTRAL", "Change", "Comparison"]

HIGHER_IS_WORSE = "higher_is_worse"
LOWER_IS_WORSE = "lower_is_worse"
NEUTRAL = "neutral"
DIRECTIONS = {+1: HIGHER_IS_WORSE, -1: LOWER_IS_WORSE, 0: NEUTRAL}


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

