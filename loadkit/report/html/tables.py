"""The HTML report's sections: the verdict, the gates, and the tables of figures.

Why each section reads the dict, not the typed model: the page also renders
reports written by older versions and live, partial ones, so each section
draws whatever the report holds and says "not measured" for a missing part
(docs/report-schema.md is the shape). Each function returns the inner HTML
of one section; page.py puts them in order. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadkit.report.exitcodes import EXPLANATIONS, VERDICTS
from loadkit.report.html.charts import Line, chart
from loadkit.report.html.markup import as_dict, as_list, esc, fmt, fmt_limit, not_measured, num, pct, table
from loadkit.report.thresholds import PHASES, mark_seconds

__all__ = [
    "close_codes_section",
    "counters_section",
    "drift_section",
    "figures_section",
    "latency_section",
    "load_generator_section",
    "outcomes_section",
    "period_line",
    "reconnect_survival_section",
    "run_section",
    "thresholds_section",
    "verdict_banner",
]

_LATENCY_COLUMNS = ("count", "min", "mean", "p50", "p90", "p95", "p99", "max")
_VERDICT_TITLES = {
    "pass": "PASS",
    "fail": "FAIL",
    "invalid": "INVALID RUN",
    "error": "HARNESS ERROR",
    "unreachable": "TARGET UNREACHABLE",
    "inconclusive": "INCONCLUSIVE",
}


def verdict_banner(report: Mapping[str, Any]) -> str:
    verdict = report.get("verdict")
    if isinstance(verdict, str) and verdict in VERDICTS:
        code = VERDICTS[verdict]
        return (
            f'<div class="verdict v-{verdict}" id="verdict">{_VERDICT_TITLES[verdict]}'
            f"<small>{esc(report.get('verdict_reason') or EXPLANATIONS[code])} &middot; exit code {int(code)}"
            "</small></div>"
        )
    shown = "missing" if verdict is None else f"unknown ({fmt(verdict)})"
    return f'<div class="verdict v-unknown" id="verdict">NO VERDICT<small>verdict {shown}</small></div>'


def thresholds_section(report: Mapping[str, Any]) -> str:
    rows = [r for r in as_list(report.get("thresholds")) if isinstance(r, Mapping)]
    if not rows:
        return '<p class="note">No thresholds were set for this run.</p>'
    cells, classes = [], []
    for row in rows:
        passed = row.get("passed") is True
        value = row.get("value")
        status = row.get("status") or ("pass" if passed else "fail" if value is not None else "not_measured")
        result = {"pass": "pass", "vacuous": "pass (vacuous)", "fail": "FAIL"}.get(status, "not measured")
        cells.append([
            f"<code>{esc(row.get('expr', ''))}</code>",
            fmt(value) if value is not None else "not measured",
            f"{esc(row.get('op', ''))}&nbsp;{fmt_limit(row.get('limit'))}",
            esc(result),
            esc(row.get("note") or ""),
        ])
        classes.append("pass" if passed else "fail" if status == "fail" else "skip")
    gates = table(("threshold", "value", "limit", "result", "note"), cells, numeric=(1,),
                   row_classes=classes, cell_classes={2: "nowrap", 3: "result"})
    return gates + _validity(report)


def _validity(report: Mapping[str, Any]) -> str:
    checks = [c for c in as_list(as_dict(report.get("validity")).get("checks")) if isinstance(c, Mapping)]
    if not checks:
        return ""
    rows = [(esc(c.get("name", "")), "ok" if c.get("ok") else esc(str(c.get("fails_as", "invalid")).upper()),
             esc(c.get("detail", ""))) for c in checks]
    classes = ["pass" if c.get("ok") else "fail" for c in checks]
    return "<h3>Run validity</h3>" + table(("check", "result", "detail"), rows, row_classes=classes,
                                           cell_classes={1: "result"})


def figures_section(report: Mapping[str, Any]) -> str:
    sessions, run = as_dict(report.get("sessions")), as_dict(report.get("run"))
    items = [
        ("duration (s)", fmt(run.get("duration_s"))),
        ("users", fmt(run.get("users"))),
        ("sessions started", fmt(sessions.get("started"))),
        ("authenticated", fmt(sessions.get("authenticated"))),
        ("open at the end", fmt(sessions.get("open"))),
        ("drops", fmt(report.get("drops"))),
        ("drop rate", pct(report.get("drop_rate"))),
        ("session hours", fmt(report.get("session_hours"))),
        ("drops per session-hour", fmt(report.get("drops_per_session_hour"))),
    ]
    body = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    invariant = report.get("invariant")
    note = ""
    if isinstance(invariant, Mapping):
        if invariant.get("ok") is True:
            note = '<p class="note">Accounting holds: every session started has ended or is still open.</p>'
        else:
            note = (
                f'<p class="warn">Accounting is broken: started {fmt(invariant.get("started"))}, '
                f'ended {fmt(invariant.get("ended"))}, open {fmt(invariant.get("open"))}.</p>'
            )
    return f'<dl class="figures">{body}</dl>{note}'


def outcomes_section(report: Mapping[str, Any]) -> str:
    sessions = as_dict(report.get("sessions"))
    outcomes = sessions.get("outcomes")
    if not isinstance(outcomes, Mapping):
        return not_measured("Outcomes")
    started = num(sessions.get("started"))

    def share(count: Any) -> str:
        number = num(count)
        return pct(number / started) if number is not None and started else "&ndash;"

    rows = [
        (esc(name), fmt(count), share(count))
        for name, count in sorted(outcomes.items(), key=lambda kv: (-(num(kv[1]) or 0), str(kv[0])))
    ]
    out = table(("outcome", "sessions", "share of started"), rows, numeric=(1, 2))
    by_phase = sessions.get("by_phase")
    if isinstance(by_phase, Mapping) and by_phase:
        phase_rows = [
            (esc(phase), esc(name), fmt(count))
            for phase, counts in by_phase.items()
            for name, count in as_dict(counts).items()
        ]
        out += "<h3>Outcomes by phase</h3>" + table(("phase", "outcome", "sessions"), phase_rows, numeric=(2,))
    return out


def close_codes_section(report: Mapping[str, Any]) -> str:
    rows = report.get("close_codes")
    if not isinstance(rows, list):
        return not_measured("Close codes")
    entries = sorted(
        (r for r in rows if isinstance(r, Mapping)),
        key=lambda r: (-(num(r.get("count")) or 0), str(r.get("phase")), str(r.get("code"))),
    )
    cells = [
        (esc(r.get("phase", "")), esc(r.get("code", "")), esc(r.get("reason") or ""), esc(r.get("initiator", "")),
         fmt(r.get("count")))
        for r in entries
    ]
    return table(("phase", "code", "reason", "initiator", "count"), cells, numeric=(1, 4))


def latency_section(report: Mapping[str, Any]) -> str:
    latency = report.get("latency_ms")
    if not isinstance(latency, Mapping):
        return not_measured("Latency")
    names = [p for p in PHASES if p in latency] + sorted(str(p) for p in latency if p not in PHASES)
    rows = [
        (esc(name), *(fmt(as_dict(latency.get(name)).get(col)) for col in _LATENCY_COLUMNS))
        for name in names
    ]
    return table(("phase", *_LATENCY_COLUMNS), rows, numeric=range(1, len(_LATENCY_COLUMNS) + 1))


def reconnect_survival_section(report: Mapping[str, Any]) -> str:
    parts = ["<h3>Reconnects</h3>"]
    reconnect = report.get("reconnect")
    if isinstance(reconnect, Mapping):
        attempts, successes = num(reconnect.get("attempts")), num(reconnect.get("successes"))
        rate = successes / attempts if attempts and successes is not None else None
        recover = as_dict(reconnect.get("recover_ms"))
        parts.append(table(
            ("attempts", "successes", "success rate", "recover p50 (ms)", "p95", "p99", "max"),
            [(fmt(reconnect.get("attempts")), fmt(reconnect.get("successes")), pct(rate),
              *(fmt(recover.get(s)) for s in ("p50", "p95", "p99", "max")))],
            numeric=range(7),
        ))
    else:
        parts.append(not_measured("Reconnects"))
    parts.append("<h3>Survival</h3>")
    survival = report.get("survival")
    if isinstance(survival, Mapping) and survival:
        marks = sorted(survival, key=lambda k: (mark_seconds(str(k)) is None, mark_seconds(str(k)) or 0, str(k)))
        rows = []
        for mark in marks:
            entry = as_dict(survival[mark])
            if "estimate" not in entry:  # an older report
                rows.append((esc(mark), pct(entry.get("rate")), "", "", fmt(entry.get("eligible")), ""))
                continue
            measured = entry.get("estimate") is not None
            rows.append((esc(mark), pct(entry.get("estimate")) if measured else "not measured",
                         pct(entry.get("lower")), pct(entry.get("upper")), fmt(entry.get("at_risk")),
                         fmt(entry.get("events"))))
        parts.append(table(("survived at least", "estimate", "95 % CI low", "high", "at risk", "drops"),
                            rows, numeric=(1, 2, 3, 4, 5)))
        parts.append('<p class="note">Kaplan-Meier over authenticated sessions: a drop is an event, any '
                     "other end is censored at its age; nobody at risk at a mark is not measured.</p>")
        curve = [p for p in as_list(report.get("survival_curve")) if isinstance(p, list) and len(p) == 2]
        if curve:
            xs: list[float] = []
            ys: list[float | None] = []
            for (age, value), nxt in zip(curve, [*curve[1:], None], strict=True):
                xs.append(float(age))
                ys.append(float(value))
                if nxt is not None:  # a step: hold the value until the next drop
                    xs.append(float(nxt[0]))
                    ys.append(float(value))
            parts.append(chart("Survival (Kaplan-Meier)", "share not dropped", xs,
                                [Line("S(age)", ys, "#2e6fb5")], x_label="session age"))
    else:
        parts.append(not_measured("Survival"))
    return "".join(parts)


def counters_section(report: Mapping[str, Any]) -> str:
    rows = []
    for section in ("keepalive", "bad_frames"):
        for key, value in as_dict(report.get(section)).items():
            rows.append((esc(f"{section}.{key}"), fmt(value)))
    for code, count in as_dict(report.get("errors")).items():
        rows.append((esc(f"error frames with code {code}"), fmt(count)))
    if not rows:
        return not_measured("Keepalive and error counters")
    return table(("counter", "value"), rows, numeric=(1,))


def drift_section(report: Mapping[str, Any]) -> str:
    drift = report.get("drift")
    if not isinstance(drift, Mapping):
        return not_measured("Drift")
    first, last = as_dict(drift.get("first")), as_dict(drift.get("last"))
    rows = []
    for phase in [p for p in PHASES if p in first or p in last] + sorted(
            str(p) for p in {*first, *last} if p not in PHASES):
        a, b = as_dict(first.get(phase)), as_dict(last.get(phase))
        for stat in [s for s in _LATENCY_COLUMNS if s in a or s in b]:
            x, y = num(a.get(stat)), num(b.get(stat))
            ratio = y / x if x and y is not None else None
            rows.append((esc(phase), esc(stat), fmt(a.get(stat)), fmt(b.get(stat)), fmt(ratio)))
    window = fmt(drift.get("window_s"))
    span = num(drift.get("span_windows"))
    across = f"the first and last {int(span)} windows" if span and span > 1 else "the first and last window"
    steady = "steady_from_window" in drift
    start = num(drift.get("steady_from_window"))
    after = ("" if not steady else f"; the first side from the windows after the spawn, window {int(start)} on"
             if start is not None else "; no window began after the spawn completed")
    return (f'<p class="sub">Each phase over {across} of {window} s (its samples merged{after}).</p>'
            + table(("phase", "statistic", "first (ms)", "last (ms)", "last / first"), rows, numeric=(2, 3, 4)))


def load_generator_section(report: Mapping[str, Any]) -> str:
    return _harness(report) + _cpu(report)


def _harness(report: Mapping[str, Any]) -> str:
    """The harness's own delays: generator lag and the token call's wait inside loadkit."""
    harness = as_dict(report.get("harness"))
    if not harness:
        return ""
    named = (("generator lag", "lag_ms"), ("token call's wait inside the harness", "wait_ms"))
    rows = [(esc(name), *(fmt(as_dict(harness.get(key)).get(col)) for col in _LATENCY_COLUMNS))
            for name, key in named if key in harness]
    warn = ""
    for check in as_list(as_dict(report.get("validity")).get("checks")):
        if isinstance(check, Mapping) and check.get("name") == "lag" and check.get("ok") is False:
            warn = f'<p class="warn">{esc(check.get("detail"))}</p>'
    limit = harness.get("lag_limit_ms")
    note = f'<p class="sub">Lag limit (p99): {fmt(limit)} ms.</p>' if limit is not None else ""
    return warn + note + table(("harness (ms)", *_LATENCY_COLUMNS), rows, numeric=range(1, len(_LATENCY_COLUMNS) + 1))


def _cpu(report: Mapping[str, Any]) -> str:
    saturation = report.get("saturation")
    if not isinstance(saturation, Mapping):
        return not_measured("Load generator saturation")
    rows = [(esc(key), fmt(value)) for key, value in saturation.items()]
    warn = ""
    if saturation.get("valid") is False:
        warn = ('<p class="warn">The load generator was saturated: '
                "these figures describe the harness, not the target.</p>")
    return warn + table(("measure", "value"), rows, numeric=(1,))


def run_section(report: Mapping[str, Any]) -> str:
    run = report.get("run")
    if not isinstance(run, Mapping):
        return not_measured("Run settings")
    rows = [(esc(key), fmt(value)) for key, value in run.items() if key != "settings"]
    if "loadkit_version" in report:
        rows.insert(0, ("loadkit_version", fmt(report["loadkit_version"])))
    out = table(("run", "value"), rows)
    settings = run.get("settings")
    if isinstance(settings, Mapping) and settings:
        out += "<h3>Settings</h3>" + table(("setting", "value"), [(esc(k), fmt(v)) for k, v in settings.items()])
    return out


def period_line(run: Mapping[str, Any]) -> str:
    started, ended = run.get("started_at"), run.get("ended_at")
    if started is None and ended is None:
        return ""
    return f'<p class="sub">from {fmt(started)} to {fmt(ended)}</p>'
