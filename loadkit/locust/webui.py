"""loadkit's one tab in Locust's web UI: the run as it goes, every few seconds.

Locust's own tables round to whole milliseconds and know nothing of open
sessions, outcomes, close codes or thresholds. The modern UI's documented
extension point is an *extended tab*: a table whose rows come in the JSON
of ``/stats/requests``, which the UI polls every 2 seconds. One table with
four short columns (section, figure, value, detail) holds everything and
fits a 1280-pixel window; "over time" is a sparkline of the time-series
windows (``--series-interval``), "per interval" the last closed window.

``/loadkit/report`` serves the live report as JSON (the same document the
final report has, without verdict). On a master both show the merged
figures of all workers, plus one row per worker.
"""

from __future__ import annotations

from typing import Any

import orjson

from loadkit.report.model import ThresholdRow

TAB = {"title": "loadkit", "key": "loadkit"}
STRUCTURE = [{"key": "section", "title": "Section"}, {"key": "figure", "title": "Figure"},
             {"key": "value", "title": "Value"}, {"key": "detail", "title": "Detail"}]
#: How many windows the "over time" sparklines show.
SPARK_WINDOWS = 40
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """``[0, 5, 10]`` → ``▁▄█``: a row of the window values, scaled to the largest."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))] for v in values)


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:.2f} %"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def tab_rows(report: dict[str, Any], windows: list[dict[str, Any]], thresholds: list[ThresholdRow],
             workers: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
    """The tab's rows from a live report, its time-series windows and threshold rows. Pure."""
    rows: list[dict[str, str]] = []

    def row(section: str, figure: str, value: Any, detail: str = "") -> None:
        rows.append({"section": section, "figure": figure, "value": value if isinstance(value, str)
                     else _num(value), "detail": detail})

    s = report["sessions"]
    recent = windows[-SPARK_WINDOWS:]
    span = f"{recent[-1]['window_s']:.0f} s windows" if recent else "no window closed yet"
    row("sessions", "open now", s["open"], f"started {s['started']} = ended "
        f"{sum(s['outcomes'].values())} + open {s['open']}")
    row("sessions", "open over time", sparkline([w["open"] for w in recent]) or "-",
        f"max {max((w['open'] for w in recent), default=0)}, {span}")
    row("sessions", "started / authenticated", f"{s['started']} / {s['authenticated']}", "since the test began")
    if recent:
        last = recent[-1]
        row("per interval", "started / authenticated / ended",
            f"{last['started']} / {last['authenticated']} / {last['ended']}",
            f"last {last['window_s']:.1f} s window")
        row("per interval", "drops", last["drops"], "ended over time: " + sparkline([w["ended"] for w in recent]))
    row("drops", "drops", report["drops"], f"{report['session_hours']:.3f} session-hours")
    row("drops", "drop rate", _pct(report["drop_rate"]), "drops / authenticated")
    row("drops", "drops per session-hour", report["drops_per_session_hour"])
    for c in report["close_codes"]:
        reason = f" {c['reason']}" if c["reason"] else ""
        row("close codes", f"{c['code']}{reason}"[:60], c["count"], f"{c['phase']}, closed by {c['initiator']}")
    for outcome, n in s["outcomes"].items():
        phases = ", ".join(f"{p} {o[outcome]}" for p, o in sorted(s["by_phase"].items()) if outcome in o)
        row("outcomes", outcome, n, phases)
    for phase, v in report["latency_ms"].items():
        if v.get("count"):
            row("latency ms", f"{phase} p50 / p95 / p99", f"{_ms(v['p50'])} / {_ms(v['p95'])} / {_ms(v['p99'])}",
                f"n {v['count']}, max {_ms(v['max'])}")
    rc = report["reconnect"]
    row("reconnects", "attempts / succeeded", f"{rc['attempts']} / {rc['successes']}",
        f"success rate {_pct(rc['success_rate'])}")
    rec = rc["recover_ms"]
    if rec.get("count"):
        row("reconnects", "time to recover p50 / p95 / max ms",
            f"{_ms(rec['p50'])} / {_ms(rec['p95'])} / {_ms(rec['max'])}", f"n {rec['count']}")
    for t in thresholds:
        state = "not measured yet" if t["passed"] is None else "holding" if t["passed"] else "BREACHED"
        row("thresholds", t["expr"], t["value"], state)
    lag = report.get("harness", {}).get("lag_ms", {})
    if lag.get("count"):
        row("harness", "generator lag p99 / max ms", f"{_ms(lag.get('p99'))} / {_ms(lag.get('max'))}",
            "how late the harness's own timers woke")
    for w in workers or []:
        row("workers", w["id"], w["state"], f"users {w['users']}, open {w['open']}, cpu {_num(w['cpu'])} %")
    return rows


def live_rows(rt: Any) -> list[dict[str, str]]:
    """The tab's rows now, from the plugin's Runtime."""
    from loadkit.report import build, thresholds

    rt.collect_local()
    report = rt.build(final=False)
    report.setdefault("harness", build.harness_section(rt.total))
    checks = thresholds.evaluate_partial(rt.thresholds, report) if rt.thresholds else []
    workers = None
    if rt.is_master:
        workers = [{"id": cid[-12:], "state": node.state, "users": node.user_count,
                    "open": rt.worker_open.get(cid, 0), "cpu": node.cpu_usage}
                   for cid, node in sorted(rt.environment.runner.clients.items())]
    return tab_rows(report, rt.series_rows, checks, workers)


def install(web_ui: Any, rt: Any) -> None:
    from flask import Response, request

    web_ui.template_args["extended_tabs"] = [TAB]
    web_ui.template_args["extended_tables"] = [{"key": TAB["key"], "structure": STRUCTURE}]

    def _report() -> Any:
        rt.collect_local()
        return Response(orjson.dumps(rt.build(final=False), option=orjson.OPT_NON_STR_KEYS),
                        mimetype="application/json")

    def _extend(response: Any) -> Any:
        if request.path == "/stats/requests" and response.is_json:
            data = response.get_json()
            data["extended_stats"] = [{"key": TAB["key"], "data": live_rows(rt)}]
            response.set_data(orjson.dumps(data))
        return response

    # plain calls, not decorators: web_ui is untyped (mypy --strict)
    web_ui.app.add_url_rule("/loadkit/report", view_func=web_ui.auth_required_if_enabled(_report))
    web_ui.app.after_request(_extend)
