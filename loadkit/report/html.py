"""One self-contained HTML page for a run: verdict, charts over time, tables.

Theory of operation
-------------------
:func:`render` takes the final report and the time-series rows (both as in
``docs/report-schema.md``) and returns a single HTML document that needs
nothing else: the CSS is inline, the charts are SVG drawn here in Python, and
there is no script at all. A Content-Security-Policy forbids every fetch, so
the file opens the same from a CI artefact, an e-mail or an air-gapped laptop.

Readers must tolerate partial data: every section is drawn from whatever the
report holds, a missing section says "not measured", and an empty series gives
a note instead of charts. Every string from the report is escaped, since close
reasons and settings are whatever a server or a user wrote.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadkit.report.exitcodes import EXPLANATIONS, VERDICTS
from loadkit.report.thresholds import PHASES, mark_seconds

__all__ = ["render"]

_LATENCY_COLUMNS = ("count", "min", "mean", "p50", "p90", "p95", "p99", "max")
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#999999")
_PERCENTILE_COLORS = {"p50": "#009E73", "p95": "#E69F00", "p99": "#D55E00"}
_MAX_CLOSE_CODE_LINES = 8
_VERDICT_TITLES = {
    "pass": "PASS",
    "fail": "FAIL",
    "invalid": "INVALID RUN",
    "error": "HARNESS ERROR",
    "unreachable": "TARGET UNREACHABLE",
    "inconclusive": "INCONCLUSIVE",
}

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1100px; padding: 0 16px 48px; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.4em; margin: 20px 0 4px; }
h2 { font-size: 1.15em; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1em; margin: 16px 0 6px; }
.sub { color: #555; margin: 0 0 12px; }
.verdict { padding: 14px 18px; border-radius: 6px; font-size: 1.5em; font-weight: 700; margin: 12px 0; }
.verdict small { display: block; font-size: 0.55em; font-weight: 400; margin-top: 4px; }
.v-pass { background: #e3f4e8; color: #135c2b; border: 2px solid #2e8b57; }
.v-fail { background: #fde4e1; color: #8a1a10; border: 2px solid #c0392b; }
.v-invalid { background: #fff1d6; color: #7a4b00; border: 2px solid #e69f00; }
.v-error, .v-unreachable { background: #f1e4f5; color: #5b1f6b; border: 2px solid #8e44ad; }
.v-inconclusive { background: #e8eef7; color: #1f3b63; border: 2px solid #4a6fa5; }
tr.skip td { background: #eef2f8; }
tr.skip td.result { color: #1f3b63; font-weight: 700; }
.v-unknown { background: #eee; color: #333; border: 2px solid #999; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #d4d4d4; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pass td { background: #eaf7ee; }
tr.fail td { background: #fdecea; }
tr.pass td.result { color: #135c2b; font-weight: 700; }
tr.fail td.result { color: #8a1a10; font-weight: 700; }
.note { color: #555; font-style: italic; }
.warn { color: #8a1a10; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure.chart { margin: 0; border: 1px solid #e2e2e2; border-radius: 4px; background: #fff; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
dl.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 8px; margin: 8px 0; }
dl.figures div { border: 1px solid #e2e2e2; border-radius: 4px; padding: 6px 10px; }
dl.figures dt { color: #555; font-size: 0.85em; }
dl.figures dd { margin: 2px 0 0; font-size: 1.2em; font-weight: 600; font-variant-numeric: tabular-nums; }
code { background: #f5f5f5; padding: 0 3px; border-radius: 3px; }
.nowrap, td code { white-space: nowrap; }
svg.chart { display: block; max-width: 100%; height: auto; }
"""


# --------------------------------------------------------------------------
# Small helpers


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _fmt(value: Any) -> str:
    """A value for display, already escaped."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return _e(value)
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return _e(f"{value:.3g}")
    if isinstance(value, (dict, list)):
        return _e(json.dumps(value, sort_keys=True, default=str))
    return _e(value)


def _fmt_limit(value: Any) -> str:
    """A threshold's limit as the user probably wrote it: 300, 0.01, 1e-05."""
    number = _num(value)
    return _e(f"{number:g}") if number is not None else _fmt(value)


def _pct(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "&ndash;"
    return f"{number * 100:.3g}&nbsp;%"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (),
           row_classes: Sequence[str] | None = None, cell_classes: Mapping[int, str] | None = None) -> str:
    """An HTML table; ``rows`` hold already escaped cells, ``headers`` are plain text."""
    numeric = set(numeric)
    cell_classes = dict(cell_classes or {})
    num_attr = ' class="num"'
    head = "".join(f"<th{num_attr if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for n, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            classes = [c for c in (("num" if i in numeric else ""), cell_classes.get(i, "")) if c]
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{cell}</td>")
        cls = f' class="{_e(row_classes[n])}"' if row_classes and row_classes[n] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    if not body:
        return '<p class="note">none</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _not_measured(what: str) -> str:
    return f'<p class="note">{_e(what)}: not measured.</p>'


# --------------------------------------------------------------------------
# Charts


@dataclass(frozen=True)
class _Line:
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


def _chart(title: str, y_label: str, xs: Sequence[float], lines: Sequence[_Line],
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
        f'role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="15" font-weight="600">{_e(title)}</text>',
    ]
    for line, lx, ly in legend:
        out.append(
            f'<g class="legend"><line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{line.color}" '
            f'stroke-width="3"/><text x="{lx + 27}" y="{ly}" font-size="12">{_e(line.label)}</text></g>'
        )
    for y in y_ticks:
        py = sy(y)
        out.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + plot_w}" y2="{py:.1f}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end" font-size="11">{_e(_tick_label(y))}</text>')
    for x in x_ticks:
        px = sx(x)
        out.append(f'<line x1="{px:.1f}" y1="{top + plot_h}" x2="{px:.1f}" y2="{top + plot_h + 5}" stroke="#333"/>')
        out.append(f'<text x="{px:.1f}" y="{top + plot_h + 18}" text-anchor="middle" font-size="11">{_e(_tick_label(x))}</text>')
    out.append(
        f'<path class="axes" d="M{left},{top} V{top + plot_h} H{left + plot_w}" fill="none" stroke="#333"/>'
        f'<text class="x-label" x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle" font-size="12">'
        f"{_e(x_label)} ({unit})</text>"
        f'<text class="y-label" transform="translate(16 {top + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
        f'font-size="12">{_e(y_label)}</text>'
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
        for x, tx, value in zip(xs, txs, line.values):
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
                    f"<title>{_e(line.label)} at {_e(_tick_label(x))} s: {_e(_tick_label(value))}</title></circle>"
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
        x = _num(row.get("elapsed_s"))
        if x is None:
            previous = xs[-1] if xs else 0.0
            x = previous + (_num(row.get("window_s")) or 1.0) if i else (_num(row.get("window_s")) or 0.0)
        xs.append(x)
    return xs


def _per_minute(rows: Sequence[Mapping[str, Any]], xs: Sequence[float], get: Any) -> list[float | None]:
    """Counts per window as rates per minute.

    The last window of a run is cut short when the run stops, and every
    session still open ends in it: divided by its own length (a few ms) that
    burst would read as a rate of 100,000 a minute. A window therefore
    counts as at least as long as the typical (median) one.
    """
    lengths: list[float] = []
    for i, row in enumerate(rows):
        window = _num(row.get("window_s"))
        if window is None or window <= 0:
            window = xs[i] - xs[i - 1] if i else None
        lengths.append(window or 0.0)
    typical = sorted(lengths)[len(lengths) // 2] if lengths else 0.0
    values: list[float | None] = []
    for row, window in zip(rows, lengths):
        count = _num(get(row))
        window = max(window, typical)
        values.append(None if count is None or window <= 0 else count * 60.0 / window)
    return values


def _charts(series: Sequence[Mapping[str, Any]]) -> str:
    rows = [row for row in series if isinstance(row, Mapping)]
    if not rows:
        return (
            '<p class="note">No time-series rows: the charts need the file written with '
            "<code>--loadkit-series</code>.</p>"
        )
    xs = _elapsed(rows)
    if all(_num(row.get("elapsed_s")) is not None for row in rows):
        order = sorted(range(len(rows)), key=lambda i: xs[i])
        rows, xs = [rows[i] for i in order], [xs[i] for i in order]
    charts = [
        _chart("Open sessions", "sessions open at the end of each window", xs,
               [_Line("open", [_num(r.get("open")) for r in rows], _PALETTE[0])]),
        _chart("Sessions started, authenticated and ended per minute", "sessions per minute", xs, [
            _Line("started", _per_minute(rows, xs, lambda r: r.get("started")), _PALETTE[0]),
            _Line("authenticated", _per_minute(rows, xs, lambda r: r.get("authenticated")), _PALETTE[2]),
            _Line("ended", _per_minute(rows, xs, lambda r: r.get("ended")), _PALETTE[1]),
        ]),
    ]
    seen_phases = {p for r in rows for p in _dict(r.get("latency_ms")) if isinstance(p, str)}
    phases = [p for p in PHASES if p in seen_phases or p == "auth"] + sorted(seen_phases - set(PHASES))
    for phase in phases:
        lines = [
            _Line(stat, [_num(_dict(_dict(r.get("latency_ms")).get(phase)).get(stat)) for r in rows],
                  _PERCENTILE_COLORS[stat])
            for stat in ("p50", "p95", "p99")
        ]
        charts.append(_chart(f"Latency of the {phase} phase", "milliseconds", xs, lines))

    codes: dict[str, float] = {}
    for row in rows:
        for code, count in _dict(row.get("close_codes")).items():
            codes[str(code)] = codes.get(str(code), 0.0) + (_num(count) or 0.0)
    ranked = sorted(codes, key=lambda c: (-codes[c], c))
    shown, rest = sorted(ranked[:_MAX_CLOSE_CODE_LINES]), set(ranked[_MAX_CLOSE_CODE_LINES:])
    drop_lines = [_Line("drops", _per_minute(rows, xs, lambda r: r.get("drops")), "#000000")]
    code_colors = [c for c in _PALETTE if c not in ("#000000", "#999999")]
    for n, code in enumerate(shown):
        drop_lines.append(_Line(f"close {code}", _per_minute(
            rows, xs, lambda r, c=code: _dict(r.get("close_codes")).get(c, 0) if "close_codes" in r else None
        ), code_colors[n % len(code_colors)]))
    if rest:
        drop_lines.append(_Line("other close codes", _per_minute(
            rows, xs, lambda r: sum(_num(v) or 0.0 for k, v in _dict(r.get("close_codes")).items() if str(k) in rest)
        ), "#999999"))
    charts.append(_chart("Drops and close codes per minute", "per minute", xs, drop_lines))
    charts.append(_chart("Reconnects per minute", "reconnects per minute", xs,
                         [_Line("reconnects", _per_minute(rows, xs, lambda r: r.get("reconnects")), _PALETTE[4])]))
    if any(_dict(_dict(r.get("harness")).get("lag_ms")).get("count") for r in rows):
        charts.append(_chart("Generator lag (timers firing late: the harness, not the target)", "milliseconds", xs, [
            _Line(stat, [_num(_dict(_dict(r.get("harness")).get("lag_ms")).get(stat)) for r in rows],
                  _PERCENTILE_COLORS[stat]) for stat in ("p50", "p95", "p99")]))
    if any(_num(r.get("cpu_percent")) is not None for r in rows):
        charts.append(_chart("Load generator CPU", "CPU percent", xs,
                             [_Line("cpu", [_num(r.get("cpu_percent")) for r in rows], _PALETTE[6])]))
    return f'<div class="charts">{"".join(charts)}</div>'


# --------------------------------------------------------------------------
# Sections


def _verdict(report: Mapping[str, Any]) -> str:
    verdict = report.get("verdict")
    if isinstance(verdict, str) and verdict in VERDICTS:
        code = VERDICTS[verdict]
        return (
            f'<div class="verdict v-{verdict}" id="verdict">{_VERDICT_TITLES[verdict]}'
            f"<small>{_e(report.get('verdict_reason') or EXPLANATIONS[code])} &middot; exit code {int(code)}"
            "</small></div>"
        )
    shown = "missing" if verdict is None else f"unknown ({_fmt(verdict)})"
    return f'<div class="verdict v-unknown" id="verdict">NO VERDICT<small>verdict {shown}</small></div>'


def _thresholds(report: Mapping[str, Any]) -> str:
    rows = [r for r in _list(report.get("thresholds")) if isinstance(r, Mapping)]
    if not rows:
        return '<p class="note">No thresholds were set for this run.</p>'
    cells, classes = [], []
    for row in rows:
        passed = row.get("passed") is True
        value = row.get("value")
        status = row.get("status") or ("pass" if passed else "fail" if value is not None else "not_measured")
        result = {"pass": "pass", "vacuous": "pass (vacuous)", "fail": "FAIL"}.get(status, "not measured")
        cells.append([
            f"<code>{_e(row.get('expr', ''))}</code>",
            _fmt(value) if value is not None else "not measured",
            f"{_e(row.get('op', ''))}&nbsp;{_fmt_limit(row.get('limit'))}",
            _e(result),
            _e(row.get("note") or ""),
        ])
        classes.append("pass" if passed else "fail" if status == "fail" else "skip")
    table = _table(("threshold", "value", "limit", "result", "note"), cells, numeric=(1,),
                   row_classes=classes, cell_classes={2: "nowrap", 3: "result"})
    return table + _validity(report)


def _validity(report: Mapping[str, Any]) -> str:
    checks = [c for c in _list(_dict(report.get("validity")).get("checks")) if isinstance(c, Mapping)]
    if not checks:
        return ""
    rows = [(_e(c.get("name", "")), "ok" if c.get("ok") else _e(str(c.get("fails_as", "invalid")).upper()),
             _e(c.get("detail", ""))) for c in checks]
    classes = ["pass" if c.get("ok") else "fail" for c in checks]
    return "<h3>Run validity</h3>" + _table(("check", "result", "detail"), rows, row_classes=classes,
                                           cell_classes={1: "result"})


def _figures(report: Mapping[str, Any]) -> str:
    sessions, run = _dict(report.get("sessions")), _dict(report.get("run"))
    items = [
        ("duration (s)", _fmt(run.get("duration_s"))),
        ("users", _fmt(run.get("users"))),
        ("sessions started", _fmt(sessions.get("started"))),
        ("authenticated", _fmt(sessions.get("authenticated"))),
        ("open at the end", _fmt(sessions.get("open"))),
        ("drops", _fmt(report.get("drops"))),
        ("drop rate", _pct(report.get("drop_rate"))),
        ("session hours", _fmt(report.get("session_hours"))),
        ("drops per session-hour", _fmt(report.get("drops_per_session_hour"))),
    ]
    body = "".join(f"<div><dt>{_e(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    invariant = report.get("invariant")
    note = ""
    if isinstance(invariant, Mapping):
        if invariant.get("ok") is True:
            note = '<p class="note">Accounting holds: every session started has ended or is still open.</p>'
        else:
            note = (
                f'<p class="warn">Accounting is broken: started {_fmt(invariant.get("started"))}, '
                f'ended {_fmt(invariant.get("ended"))}, open {_fmt(invariant.get("open"))}.</p>'
            )
    return f'<dl class="figures">{body}</dl>{note}'


def _outcomes(report: Mapping[str, Any]) -> str:
    sessions = _dict(report.get("sessions"))
    outcomes = sessions.get("outcomes")
    if not isinstance(outcomes, Mapping):
        return _not_measured("Outcomes")
    started = _num(sessions.get("started"))

    def share(count: Any) -> str:
        number = _num(count)
        return _pct(number / started) if number is not None and started else "&ndash;"

    rows = [
        (_e(name), _fmt(count), share(count))
        for name, count in sorted(outcomes.items(), key=lambda kv: (-(_num(kv[1]) or 0), str(kv[0])))
    ]
    out = _table(("outcome", "sessions", "share of started"), rows, numeric=(1, 2))
    by_phase = sessions.get("by_phase")
    if isinstance(by_phase, Mapping) and by_phase:
        phase_rows = [
            (_e(phase), _e(name), _fmt(count))
            for phase, counts in by_phase.items()
            for name, count in _dict(counts).items()
        ]
        out += "<h3>Outcomes by phase</h3>" + _table(("phase", "outcome", "sessions"), phase_rows, numeric=(2,))
    return out


def _close_codes(report: Mapping[str, Any]) -> str:
    rows = report.get("close_codes")
    if not isinstance(rows, list):
        return _not_measured("Close codes")
    entries = sorted(
        (r for r in rows if isinstance(r, Mapping)),
        key=lambda r: (-(_num(r.get("count")) or 0), str(r.get("phase")), str(r.get("code"))),
    )
    cells = [
        (_e(r.get("phase", "")), _e(r.get("code", "")), _e(r.get("reason") or ""), _e(r.get("initiator", "")),
         _fmt(r.get("count")))
        for r in entries
    ]
    return _table(("phase", "code", "reason", "initiator", "count"), cells, numeric=(1, 4))


def _latency(report: Mapping[str, Any]) -> str:
    latency = report.get("latency_ms")
    if not isinstance(latency, Mapping):
        return _not_measured("Latency")
    names = [p for p in PHASES if p in latency] + sorted(str(p) for p in latency if p not in PHASES)
    rows = [
        (_e(name), *(_fmt(_dict(latency.get(name)).get(col)) for col in _LATENCY_COLUMNS))
        for name in names
    ]
    return _table(("phase", *_LATENCY_COLUMNS), rows, numeric=range(1, len(_LATENCY_COLUMNS) + 1))


def _reconnect_survival(report: Mapping[str, Any]) -> str:
    parts = ["<h3>Reconnects</h3>"]
    reconnect = report.get("reconnect")
    if isinstance(reconnect, Mapping):
        attempts, successes = _num(reconnect.get("attempts")), _num(reconnect.get("successes"))
        rate = successes / attempts if attempts and successes is not None else None
        recover = _dict(reconnect.get("recover_ms"))
        parts.append(_table(
            ("attempts", "successes", "success rate", "recover p50 (ms)", "p95", "p99", "max"),
            [(_fmt(reconnect.get("attempts")), _fmt(reconnect.get("successes")), _pct(rate),
              *(_fmt(recover.get(s)) for s in ("p50", "p95", "p99", "max")))],
            numeric=range(7),
        ))
    else:
        parts.append(_not_measured("Reconnects"))
    parts.append("<h3>Survival</h3>")
    survival = report.get("survival")
    if isinstance(survival, Mapping) and survival:
        marks = sorted(survival, key=lambda k: (mark_seconds(str(k)) is None, mark_seconds(str(k)) or 0, str(k)))
        rows = []
        for mark in marks:
            entry = _dict(survival[mark])
            if "estimate" not in entry:  # an older report
                rows.append((_e(mark), _pct(entry.get("rate")), "", "", _fmt(entry.get("eligible")), ""))
                continue
            measured = entry.get("estimate") is not None
            rows.append((_e(mark), _pct(entry.get("estimate")) if measured else "not measured",
                         _pct(entry.get("lower")), _pct(entry.get("upper")), _fmt(entry.get("at_risk")),
                         _fmt(entry.get("events"))))
        parts.append(_table(("survived at least", "estimate", "95 % CI low", "high", "at risk", "drops"),
                            rows, numeric=(1, 2, 3, 4, 5)))
        parts.append('<p class="note">Kaplan-Meier over authenticated sessions: a drop is an event, any '
                     "other end is censored at its age; nobody at risk at a mark is not measured.</p>")
        curve = [p for p in _list(report.get("survival_curve")) if isinstance(p, list) and len(p) == 2]
        if curve:
            xs: list[float] = []
            ys: list[float | None] = []
            for (age, value), nxt in zip(curve, [*curve[1:], None]):
                xs.append(float(age))
                ys.append(float(value))
                if nxt is not None:  # a step: hold the value until the next drop
                    xs.append(float(nxt[0]))
                    ys.append(float(value))
            parts.append(_chart("Survival (Kaplan-Meier)", "share not dropped", xs,
                                [_Line("S(age)", ys, "#2e6fb5")], x_label="session age"))
    else:
        parts.append(_not_measured("Survival"))
    return "".join(parts)


def _other_counters(report: Mapping[str, Any]) -> str:
    rows = []
    for section in ("keepalive", "bad_frames"):
        for key, value in _dict(report.get(section)).items():
            rows.append((_e(f"{section}.{key}"), _fmt(value)))
    for code, count in _dict(report.get("errors")).items():
        rows.append((_e(f"error frames with code {code}"), _fmt(count)))
    if not rows:
        return _not_measured("Keepalive and error counters")
    return _table(("counter", "value"), rows, numeric=(1,))


def _drift(report: Mapping[str, Any]) -> str:
    drift = report.get("drift")
    if not isinstance(drift, Mapping):
        return _not_measured("Drift")
    first, last = _dict(drift.get("first")), _dict(drift.get("last"))
    rows = []
    for phase in [p for p in PHASES if p in first or p in last] + sorted(
            str(p) for p in {*first, *last} if p not in PHASES):
        a, b = _dict(first.get(phase)), _dict(last.get(phase))
        for stat in [s for s in _LATENCY_COLUMNS if s in a or s in b]:
            x, y = _num(a.get(stat)), _num(b.get(stat))
            ratio = y / x if x and y is not None else None
            rows.append((_e(phase), _e(stat), _fmt(a.get(stat)), _fmt(b.get(stat)), _fmt(ratio)))
    window = _fmt(drift.get("window_s"))
    return (f'<p class="sub">First and last window of {window} s.</p>'
            + _table(("phase", "statistic", "first (ms)", "last (ms)", "last / first"), rows, numeric=(2, 3, 4)))


def _saturation(report: Mapping[str, Any]) -> str:
    return _harness(report) + _cpu(report)


def _harness(report: Mapping[str, Any]) -> str:
    """The harness's own delays: generator lag and the token call's wait inside loadkit."""
    harness = _dict(report.get("harness"))
    if not harness:
        return ""
    named = (("generator lag", "lag_ms"), ("token call's wait inside the harness", "wait_ms"))
    rows = [(_e(name), *(_fmt(_dict(harness.get(key)).get(col)) for col in _LATENCY_COLUMNS))
            for name, key in named if key in harness]
    warn = ""
    for check in _list(_dict(report.get("validity")).get("checks")):
        if isinstance(check, Mapping) and check.get("name") == "lag" and check.get("ok") is False:
            warn = f'<p class="warn">{_e(check.get("detail"))}</p>'
    limit = harness.get("lag_limit_ms")
    note = f'<p class="sub">Lag limit (p99): {_fmt(limit)} ms.</p>' if limit is not None else ""
    return warn + note + _table(("harness (ms)", *_LATENCY_COLUMNS), rows, numeric=range(1, len(_LATENCY_COLUMNS) + 1))


def _cpu(report: Mapping[str, Any]) -> str:
    saturation = report.get("saturation")
    if not isinstance(saturation, Mapping):
        return _not_measured("Load generator saturation")
    rows = [(_e(key), _fmt(value)) for key, value in saturation.items()]
    warn = ""
    if saturation.get("valid") is False:
        warn = '<p class="warn">The load generator was saturated: these figures describe the harness, not the target.</p>'
    return warn + _table(("measure", "value"), rows, numeric=(1,))


def _settings(report: Mapping[str, Any]) -> str:
    run = report.get("run")
    if not isinstance(run, Mapping):
        return _not_measured("Run settings")
    rows = [(_e(key), _fmt(value)) for key, value in run.items() if key != "settings"]
    if "loadkit_version" in report:
        rows.insert(0, ("loadkit_version", _fmt(report["loadkit_version"])))
    out = _table(("run", "value"), rows)
    settings = run.get("settings")
    if isinstance(settings, Mapping) and settings:
        out += "<h3>Settings</h3>" + _table(("setting", "value"), [(_e(k), _fmt(v)) for k, v in settings.items()])
    return out


def _period(run: Mapping[str, Any]) -> str:
    started, ended = run.get("started_at"), run.get("ended_at")
    if started is None and ended is None:
        return ""
    return f'<p class="sub">from {_fmt(started)} to {_fmt(ended)}</p>'


# --------------------------------------------------------------------------


def render(report: Mapping[str, Any], series: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Return one self-contained HTML document for a report and its time series."""
    report = _dict(report)
    run = _dict(report.get("run"))
    title_bits = [str(b) for b in (run.get("profile"), run.get("host"), run.get("started_at")) if b]
    title = "loadkit report" + (": " + " · ".join(title_bits) if title_bits else "")
    sections = [
        ("Thresholds", _thresholds(report)),
        ("Key figures", _figures(report)),
        ("Over time", _charts(list(series or []))),
        ("Outcomes", _outcomes(report)),
        ("Close codes", _close_codes(report)),
        ("Latency (ms)", _latency(report)),
        ("Reconnects and survival", _reconnect_survival(report)),
        ("Drift", _drift(report)),
        ("Keepalive and errors", _other_counters(report)),
        ("Load generator", _saturation(report)),
        ("Run", _settings(report)),
    ]
    body = "".join(f"<section><h2>{_e(name)}</h2>{content}</section>" for name, content in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f"{_period(run)}"
        f"{_verdict(report)}{body}</body></html>\n"
    )
