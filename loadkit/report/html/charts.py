"""Charts for the HTML report: line charts drawn as inline SVG, and the series charts.

Why SVG drawn here: the page must open the same from a CI artefact, an
e-mail or an air-gapped laptop, with a Content-Security-Policy that forbids
every fetch and no script at all; a chart library would need one or the
other. :func:`chart` draws one chart (axes with round ticks, a grid, a
legend, gaps where a window has no data); :func:`series_charts` draws the
run over time from the time-series rows (docs/report-schema.md). Counts per
window are shown per minute (:func:`per_minute`), so windows of different
lengths compare. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadkit.report.html.markup import as_dict, esc, num
from loadkit.report.thresholds import PHASES

__all__ = ["Line", "chart", "per_minute", "series_charts"]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#999999")
_PERCENTILE_COLORS = {"p50": "#009E73", "p95": "#E69F00", "p99": "#D55E00"}
_MAX_CLOSE_CODE_LINES = 8


@dataclass(frozen=True)
class Line:
    """One line of a chart: a value per x (None where that window has no data)."""

    label: str
    values: list[float | None]
    color: str


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude * (1 + 1e-9):
            return multiple * magnitude
    return 10 * magnitude  # pragma: no cover


def _ticks(lo: float, hi: float) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    step = _nice_step(hi - lo)
    first = math.floor(lo / step + 1e-9) * step
    count = math.ceil((hi - first) / step - 1e-9)
    return [first + i * step for i in range(count + 1)]


def _tick_label(value: float) -> str:
    if abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    return f"{value:.3g}"


def _time_unit(max_seconds: float) -> tuple[float, str]:
    if max_seconds <= 180:
        return 1.0, "s"
    if max_seconds <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def chart(title: str, y_label: str, xs: Sequence[float], lines: Sequence[Line],
           x_label: str = "elapsed time") -> str:
    """A line chart as inline SVG, with title, axis labels, ticks, grid and legend."""
    width, height, left, right, bottom = 760, 290, 72, 20, 50
    # Legend: as many rows as needed under the title.
    legend, x_cursor, row = [], left, 0
    for line in lines:
        item_width = 30 + 7 * len(line.label)
        if x_cursor + item_width > width - right and x_cursor > left:
            x_cursor, row = left, row + 1
        legend.append((line, x_cursor, 40 + 16 * row))
        x_cursor += item_width + 12
    top = 56 + 16 * row
    plot_w, plot_h = width - left - right, height - top - bottom

    points = [v for line in lines for v in line.values if v is not None]
    scale, unit = _time_unit(max(xs) if xs else 0.0)
    txs = [x / scale for x in xs]
    # The time axis ends with the data; the value axis at a round number above it.
    x_lo, x_hi = min(0.0, min(txs, default=0.0)), max(txs, default=1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1
    x_ticks = [x for x in _ticks(x_lo, x_hi) if x_lo - 1e-9 <= x <= x_hi * (1 + 1e-9)]
    y_ticks = _ticks(min(0.0, min(points, default=0.0)), max(points, default=1.0))
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    out = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="15" font-weight="600">{esc(title)}</text>',
    ]
    for line, lx, ly in legend:
        out.append(
            f'<g class="legend"><line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{line.color}" '
            f'stroke-width="3"/><text x="{lx + 27}" y="{ly}" font-size="12">{esc(line.label)}</text></g>'
        )
    for y in y_ticks:
        py = sy(y)
        out.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + plot_w}" y2="{py:.1f}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end" font-size="11">'
                   f"{esc(_tick_label(y))}</text>")
    for x in x_ticks:
        px = sx(x)
        out.append(f'<line x1="{px:.1f}" y1="{top + plot_h}" x2="{px:.1f}" y2="{top + plot_h + 5}" stroke="#333"/>')
        out.append(f'<text x="{px:.1f}" y="{top + plot_h + 18}" text-anchor="middle" font-size="11">'
                   f"{esc(_tick_label(x))}</text>")
    out.append(
        f'<path class="axes" d="M{left},{top} V{top + plot_h} H{left + plot_w}" fill="none" stroke="#333"/>'
        f'<text class="x-label" x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle" font-size="12">'
        f"{esc(x_label)} ({unit})</text>"
        f'<text class="y-label" transform="translate(16 {top + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
        f'font-size="12">{esc(y_label)}</text>'
    )
    if not points:
        out.append(
            f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" font-size="13" '
            'fill="#777">no data in any window</text>'
        )
    markers = len(xs) <= 120
    for line in lines:
        segment: list[str] = []
        segments: list[list[str]] = []
        dots = []
        for x, tx, value in zip(xs, txs, line.values, strict=False):  # a short line draws what it has
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            px, py = sx(tx), sy(value)
            segment.append(f"{px:.1f},{py:.1f}")
            if markers:
                dots.append(
                    f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.2" fill="{line.color}">'
                    f"<title>{esc(line.label)} at {esc(_tick_label(x))} s: {esc(_tick_label(value))}</title></circle>"
                )
        if segment:
            segments.append(segment)
        for seg in segments:
            if len(seg) > 1:
                out.append(
                    f'<polyline class="series" points="{" ".join(seg)}" fill="none" stroke="{line.color}" '
                    'stroke-width="1.8" stroke-linejoin="round"/>'
                )
            elif not markers:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.2" fill="{line.color}"/>')
        out.extend(dots)
    out.append("</svg>")
    return f'<figure class="chart">{"".join(out)}</figure>'


def _elapsed(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    xs: list[float] = []
    for i, row in enumerate(rows):
        x = num(row.get("elapsed_s"))
        if x is None:
            previous = xs[-1] if xs else 0.0
            x = previous + (num(row.get("window_s")) or 1.0) if i else (num(row.get("window_s")) or 0.0)
        xs.append(x)
    return xs


def per_minute(rows: Sequence[Mapping[str, Any]], xs: Sequence[float],
               get: Callable[[Mapping[str, Any]], Any]) -> list[float | None]:
    """Counts per window as rates per minute.

    The last window of a run is cut short when the run stops, and every
    session still open ends in it: divided by its own length (a few ms) that
    burst would read as a rate of 100,000 a minute. A window therefore
    counts as at least as long as the typical (median) one.
    """
    lengths: list[float] = []
    for i, row in enumerate(rows):
        window = num(row.get("window_s"))
        if window is None or window <= 0:
            window = xs[i] - xs[i - 1] if i else None
        lengths.append(window or 0.0)
    typical = sorted(lengths)[len(lengths) // 2] if lengths else 0.0
    values: list[float | None] = []
    for row, window in zip(rows, lengths, strict=True):
        count = num(get(row))
        window = max(window, typical)
        values.append(None if count is None or window <= 0 else count * 60.0 / window)
    return values


def _close_count(code: str) -> Callable[[Mapping[str, Any]], Any]:
    """A series row's count of one close code (0 when the row has others, None when it has none)."""

    def count(row: Mapping[str, Any]) -> Any:
        return as_dict(row.get("close_codes")).get(code, 0) if "close_codes" in row else None

    return count


def series_charts(series: Sequence[Mapping[str, Any]]) -> str:
    rows = [row for row in series if isinstance(row, Mapping)]
    if not rows:
        return (
            '<p class="note">No time-series rows: the charts need the file written with '
            "<code>--loadkit-series</code>.</p>"
        )
    xs = _elapsed(rows)
    if all(num(row.get("elapsed_s")) is not None for row in rows):
        order = sorted(range(len(rows)), key=lambda i: xs[i])
        rows, xs = [rows[i] for i in order], [xs[i] for i in order]
    charts = [
        chart("Open sessions", "sessions open at the end of each window", xs,
               [Line("open", [num(r.get("open")) for r in rows], _PALETTE[0])]),
        chart("Sessions started, authenticated and ended per minute", "sessions per minute", xs, [
            Line("started", per_minute(rows, xs, lambda r: r.get("started")), _PALETTE[0]),
            Line("authenticated", per_minute(rows, xs, lambda r: r.get("authenticated")), _PALETTE[2]),
            Line("ended", per_minute(rows, xs, lambda r: r.get("ended")), _PALETTE[1]),
        ]),
    ]
    seen_phases = {p for r in rows for p in as_dict(r.get("latency_ms")) if isinstance(p, str)}
    phases = [p for p in PHASES if p in seen_phases or p == "auth"] + sorted(seen_phases - set(PHASES))
    for phase in phases:
        lines = [
            Line(stat, [num(as_dict(as_dict(r.get("latency_ms")).get(phase)).get(stat)) for r in rows],
                  _PERCENTILE_COLORS[stat])
            for stat in ("p50", "p95", "p99")
        ]
        charts.append(chart(f"Latency of the {phase} phase", "milliseconds", xs, lines))

    codes: dict[str, float] = {}
    for row in rows:
        for code, count in as_dict(row.get("close_codes")).items():
            codes[str(code)] = codes.get(str(code), 0.0) + (num(count) or 0.0)
    ranked = sorted(codes, key=lambda c: (-codes[c], c))
    shown, rest = sorted(ranked[:_MAX_CLOSE_CODE_LINES]), set(ranked[_MAX_CLOSE_CODE_LINES:])
    drop_lines = [Line("drops", per_minute(rows, xs, lambda r: r.get("drops")), "#000000")]
    code_colors = [c for c in _PALETTE if c not in ("#000000", "#999999")]
    for n, code in enumerate(shown):
        drop_lines.append(Line(f"close {code}", per_minute(rows, xs, _close_count(code)),
                               code_colors[n % len(code_colors)]))
    if rest:
        drop_lines.append(Line("other close codes", per_minute(
            rows, xs, lambda r: sum(num(v) or 0.0 for k, v in as_dict(r.get("close_codes")).items() if str(k) in rest)
        ), "#999999"))
    charts.append(chart("Drops and close codes per minute", "per minute", xs, drop_lines))
    charts.append(chart("Reconnects per minute", "reconnects per minute", xs,
                         [Line("reconnects", per_minute(rows, xs, lambda r: r.get("reconnects")), _PALETTE[4])]))
    if any(as_dict(as_dict(r.get("harness")).get("lag_ms")).get("count") for r in rows):
        charts.append(chart("Generator lag (timers firing late: the harness, not the target)", "milliseconds", xs, [
            Line(stat, [num(as_dict(as_dict(r.get("harness")).get("lag_ms")).get(stat)) for r in rows],
                  _PERCENTILE_COLORS[stat]) for stat in ("p50", "p95", "p99")]))
    if any(num(r.get("cpu_percent")) is not None for r in rows):
        charts.append(chart("Load generator CPU", "CPU percent", xs,
                             [Line("cpu", [num(r.get("cpu_percent")) for r in rows], _PALETTE[6])]))
    return f'<div class="charts">{"".join(charts)}</div>'
