"""loadkit's tab in Locust's web UI: outcomes, close codes and µs latencies, live.

Locust's own tables round to whole milliseconds and know nothing of
outcomes or close codes; this adds them to the modern UI the documented way:
extended tabs fed through the JSON of ``/stats/requests``, plus
``/loadkit/report`` serving the live report as JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

TABLES = [
    {"key": "loadkit_outcomes", "title": "loadkit: outcomes",
     "structure": [{"key": "phase", "title": "Phase"}, {"key": "outcome", "title": "Outcome"},
                   {"key": "count", "title": "Sessions"}]},
    {"key": "loadkit_close_codes", "title": "loadkit: close codes",
     "structure": [{"key": "code", "title": "Code"}, {"key": "reason", "title": "Reason"},
                   {"key": "initiator", "title": "Closed by"}, {"key": "phase", "title": "Phase"},
                   {"key": "count", "title": "Count"}]},
    {"key": "loadkit_latency", "title": "loadkit: latency (ms)",
     "structure": [{"key": "phase", "title": "Phase"}, {"key": "count", "title": "Count"},
                   {"key": "p50", "title": "p50"}, {"key": "p95", "title": "p95"},
                   {"key": "p99", "title": "p99"}, {"key": "max", "title": "Max"}]},
]


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    s = report["sessions"]
    return [
        {"key": "loadkit_outcomes", "data": [
            {"phase": p, "outcome": o, "count": n} for p, outs in sorted(s["by_phase"].items())
            for o, n in sorted(outs.items())]},
        {"key": "loadkit_close_codes", "data": [
            {k: c[k] for k in ("code", "reason", "initiator", "phase", "count")} for c in report["close_codes"]]},
        {"key": "loadkit_latency", "data": [
            {"phase": p, **{k: v.get(k) for k in ("count", "p50", "p95", "p99", "max")}}
            for p, v in report["latency_ms"].items() if v.get("count")]},
    ]


def install(web_ui: Any, rt: Any) -> None:
    from flask import Response, request

    web_ui.template_args["extended_tabs"] = [{"title": t["title"], "key": t["key"]} for t in TABLES]
    web_ui.template_args["extended_tables"] = [{"key": t["key"], "structure": t["structure"]} for t in TABLES]

    def live() -> dict[str, Any]:
        rt.collect_local()
        return rt.build(final=False)

    @web_ui.app.route("/loadkit/report")
    @web_ui.auth_required_if_enabled
    def _report() -> Any:
        return Response(orjson.dumps(live(), option=orjson.OPT_NON_STR_KEYS), mimetype="application/json")

    @web_ui.app.after_request
    def _extend(response: Any) -> Any:
        if request.path == "/stats/requests" and response.is_json:
            data = response.get_json()
            data["extended_stats"] = rows(live())
            response.set_data(orjson.dumps(data))
        return response
