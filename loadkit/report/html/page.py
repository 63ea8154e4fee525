"""One self-contained HTML page for a run: verdict, charts over time, tables.

Theory of operation
-------------------
:func:`render` takes the final report and the time-series rows (both as in
``docs/report-schema.md``) and returns a single HTML document that needs
nothing else: the CSS is inline, the charts are SVG drawn in Python
(charts.py), and there is no script at all. A Content-Security-Policy forbids
every fetch, so the file opens the same from a CI artefact, an e-mail or an
air-gapped laptop. This module is the page's skeleton: the head, the style
and the order of the sections (tables.py draws them).

Readers must tolerate partial data: every section is drawn from whatever the
report holds, a missing section says "not measured", and an empty series gives
a note instead of charts. Every string from the report is escaped, since close
reasons and settings are whatever a server or a user wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loadkit.report.html.charts import series_charts
from loadkit.report.html.markup import as_dict, esc
from loadkit.report.html.tables import (
    close_codes_section,
    counters_section,
    drift_section,
    figures_section,
    latency_section,
    load_generator_section,
    outcomes_section,
    period_line,
    reconnect_survival_section,
    run_section,
    thresholds_section,
    verdict_banner,
)

__all__ = ["render"]

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



def render(report: Mapping[str, Any], series: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Return one self-contained HTML document for a report and its time series."""
    report = as_dict(report)
    run = as_dict(report.get("run"))
    title_bits = [str(b) for b in (run.get("profile"), run.get("host"), run.get("started_at")) if b]
    title = "loadkit report" + (": " + " · ".join(title_bits) if title_bits else "")
    sections = [
        ("Thresholds", thresholds_section(report)),
        ("Key figures", figures_section(report)),
        ("Over time", series_charts(list(series or []))),
        ("Outcomes", outcomes_section(report)),
        ("Close codes", close_codes_section(report)),
        ("Latency (ms)", latency_section(report)),
        ("Reconnects and survival", reconnect_survival_section(report)),
        ("Drift", drift_section(report)),
        ("Keepalive and errors", counters_section(report)),
        ("Load generator", load_generator_section(report)),
        ("Run", run_section(report)),
    ]
    body = "".join(f"<section><h2>{esc(name)}</h2>{content}</section>" for name, content in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f"{period_line(run)}"
        f"{verdict_banner(report)}{body}</body></html>\n"
    )
