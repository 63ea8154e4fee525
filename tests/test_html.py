"""The HTML report: content, escaping, self-containment, and a real headless Chromium."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loadkit.report.html import render

# ---------------------------------------------------------------- synthetic data


def make_report() -> dict[str, Any]:
    latency = {"count": 120, "min": 0.41, "mean": 0.9, "p50": 0.8, "p90": 1.5, "p95": 1.9, "p99": 3.1, "max": 4.2}
    return {
        "loadkit_version": "0.1.0",
        "run": {
            "started_at": "2026-11-28T01:00:00Z",
            "ended_at": "2026-11-28T01:10:00Z",
            "duration_s": 600.0,
            "host": "http://127.0.0.1:40123",
            "profile": "guest",
            "embedded_gateway": True,
            "users": 50,
            "workers": {"count": 0, "lost": []},
            "settings": {"session_seconds": "5-10", "keepalive_s": 20.0},
        },
        "sessions": {
            "started": 120,
            "authenticated": 118,
            "open": 0,
            "outcomes": {"closed_normally": 100, "dropped_by_server": 3, "stopped_by_harness": 15, "auth_refused": 2},
            "by_phase": {"during_auth": {"auth_refused": 2}, "established": {"closed_normally": 100}},
        },
        "invariant": {"ok": True, "started": 120, "ended": 120, "open": 0},
        "close_codes": [
            {"phase": "during_auth", "code": 1000, "reason": "", "initiator": "server", "count": 2},
            {"phase": "established", "code": 1011, "reason": "internal error", "initiator": "server", "count": 3},
        ],
        "drops": 3,
        "drop_rate": 0.0254,
        "session_hours": 0.31,
        "drops_per_session_hour": 9.6,
        "latency_ms": {phase: dict(latency) for phase in ("token", "connect", "auth", "message", "ping", "reply")},
        "reconnect": {"attempts": 4, "successes": 3, "recover_ms": {"count": 3, "p50": 900.0, "p95": 2100.0, "p99": 2100.0, "max": 2100.0}},
        "survival": {"1m": {"reached": 40, "eligible": 50, "rate": 0.8}, "5m": {"reached": 0, "eligible": 0, "rate": None}},
        "keepalive": {"missed_pongs": 0, "timeouts": 0},
        "errors": {"4029": 12},
        "bad_frames": {"not_json": 0, "unknown_type": 0},
        "drift": {"window_s": 10, "first": {"auth": {"p50": 1.0, "p95": 2.0, "p99": 3.0}}, "last": {"auth": {"p50": 1.1, "p95": 2.2, "p99": 3.5}}},
        "saturation": {"max_cpu_percent": 41.0, "share_above_90": 0.0, "valid": True},
        "thresholds": [
            {"expr": "auth.p95 < 300", "metric": "auth.p95", "op": "<", "limit": 300.0, "value": 1.9, "passed": True},
            {"expr": "drop_rate < 0.01", "metric": "drop_rate", "op": "<", "limit": 0.01, "value": 0.0254, "passed": False},
            {"expr": "survival.5m > 0.99", "metric": "survival.5m", "op": ">", "limit": 0.99, "value": None,
             "passed": None, "status": "not_measured", "note": "not measured (no session was eligible for survival.5m)"},
        ],
        "verdict": "fail",
    }


def make_series(windows: int = 30) -> list[dict[str, Any]]:
    rows = []
    for i in range(windows):
        rows.append({
            "t": 1795823231.0 + 10 * i,
            "elapsed_s": 10.0 * (i + 1),
            "window_s": 10.0,
            "open": min(48, 4 * i),
            "started": 12,
            "authenticated": 12,
            "ended": 10,
            "drops": int(i % 7 == 3),
            "reconnects": int(i % 5 == 0),
            "outcomes": {"closed_normally": 10},
            "close_codes": {"1000": 10, **({"1011": 1} if i % 7 == 3 else {})},
            "latency_ms": {
                "auth": {"count": 12, "p50": 0.8 + i / 100, "p95": 1.2 + i / 50, "p99": 1.4 + i / 25, "max": 2.0},
                "message": {"count": 30, "p50": 2.0, "p95": 3.0, "p99": 4.0, "max": 5.0},
            },
            "cpu_percent": 23.0 + i % 3,
        })
    return rows


class _Tags(HTMLParser):
    """Collects every start tag with its attributes, and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(document: str) -> _Tags:
    parser = _Tags()
    parser.feed(document)
    parser.close()
    return parser


def svgs(document: str) -> list[str]:
    return document.split("<svg")[1:]


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "div", "section", "small", "code",
    "table", "thead", "tbody", "tr", "th", "td", "dl", "dt", "dd", "figure",
    "svg", "g", "line", "path", "polyline", "circle", "text",
}

# ---------------------------------------------------------------- content


def test_full_report_shows_verdict_thresholds_tables_and_charts() -> None:
    document = render(make_report(), make_series())
    assert document.startswith("<!DOCTYPE html>")
    text = " ".join(parse(document).text)
    assert "FAIL" in text and "thresholds breached" in text and "exit code 3" in text
    for expr in ("auth.p95 < 300", "drop_rate < 0.01", "survival.5m > 0.99"):
        assert expr in text
    assert "not measured (no session was eligible for survival.5m)" in text
    assert document.count('<tr class="pass">') == 1 and document.count('<tr class="fail">') == 1
    assert document.count('<tr class="skip">') == 1
    for title in (
        "Open sessions",
        "Sessions started, authenticated and ended per minute",
        "Latency of the auth phase",
        "Latency of the message phase",
        "Drops and close codes per minute",
        "Reconnects per minute",
        "Load generator CPU",
    ):
        assert f"<title>{title}</title>" in document
    assert "Latency of the token phase" not in document  # not in the series
    for expected in ("internal error", "dropped_by_server", "during_auth", "session_seconds", "5-10", "4029",
                     "http://127.0.0.1:40123", "missed_pongs", "max_cpu_percent"):
        assert expected in text
    assert "Accounting holds" in text


def test_every_chart_has_a_title_axis_labels_ticks_and_lines() -> None:
    document = render(make_report(), make_series())
    charts = svgs(document)
    assert len(charts) == 7
    for chart in charts:
        assert "<title>" in chart and 'class="x-label"' in chart and 'class="y-label"' in chart
        assert "elapsed time (min)" in chart  # 300 s of windows
        assert chart.count("<text") >= 8  # title, labels, ticks
        assert '<polyline class="series"' in chart


def test_latency_chart_draws_p50_p95_and_p99() -> None:
    chart = next(c for c in svgs(render(make_report(), make_series())) if "Latency of the auth phase" in c)
    assert chart.count('<polyline class="series"') == 3
    assert ">p50</text>" in chart and ">p95</text>" in chart and ">p99</text>" in chart


def test_counts_are_charted_per_minute() -> None:
    chart = next(c for c in svgs(render({}, make_series())) if "Sessions started" in c)
    # 12 sessions per 10 s window are 72 per minute: the y axis goes to 80.
    assert ">80</text>" in chart and "started at 10 s: 72" in chart


def test_long_runs_switch_the_time_unit_and_drop_point_markers() -> None:
    rows = make_series(2000)  # 20,000 s
    document = render(make_report(), rows)
    assert "elapsed time (h)" in document
    assert "<circle" not in document
    assert "elapsed time (s)" in render(make_report(), make_series(18))


def test_gaps_in_a_series_split_the_line() -> None:
    rows = make_series(10)
    rows[4]["latency_ms"] = {}
    rows[5]["latency_ms"] = {"auth": {"p50": None}}
    chart = next(c for c in svgs(render({}, rows)) if "auth phase" in c)
    assert chart.count('<polyline class="series"') == 6  # two segments for each of p50, p95, p99


def test_an_auth_chart_is_drawn_even_without_auth_samples() -> None:
    rows = [{"elapsed_s": 10.0, "window_s": 10.0, "open": 1}]
    chart = next(c for c in svgs(render({}, rows)) if "auth phase" in c)
    assert "no data in any window" in chart


def test_unsorted_rows_and_rows_without_elapsed_time() -> None:
    rows = make_series(5)
    assert render({}, list(reversed(rows))) == render({}, rows)
    for row in rows:
        del row["elapsed_s"]
    assert "<polyline" in render({}, rows)


def test_many_close_codes_are_folded_into_other() -> None:
    rows = make_series(3)
    for row in rows:
        row["close_codes"] = {str(code): 1 for code in range(4000, 4012)}
    chart = next(c for c in svgs(render({}, rows)) if "Drops and close codes" in c)
    assert ">other close codes</text>" in chart
    assert len(re.findall(r">close 40\d\d</text>", chart)) == 8


# ---------------------------------------------------------------- missing and odd data


def test_empty_report_and_series_render() -> None:
    empty: list[list[dict[str, Any]] | None] = [[], None]
    for series in empty:
        document = render({}, series)
        text = " ".join(parse(document).text)
        assert "NO VERDICT" in text and "No time-series rows" in text
        assert "No thresholds were set" in text
        assert "Latency: not measured." in text and "Close codes: not measured." in text
        assert "<svg" not in document


@pytest.mark.parametrize("verdict, shown", [
    ("pass", "PASS"), ("invalid", "INVALID RUN"), ("error", "HARNESS ERROR"),
    ("unreachable", "TARGET UNREACHABLE"), ("maybe", "NO VERDICT"),
])
def test_each_verdict_has_its_banner(verdict: str, shown: str) -> None:
    assert f'id="verdict">{shown}' in render({"verdict": verdict}, [])


def test_sections_of_the_wrong_type_render_as_not_measured() -> None:
    odd = {
        "run": "x", "sessions": [], "close_codes": {"a": 1}, "latency_ms": "fast", "reconnect": 3,
        "survival": [], "drift": None, "saturation": 1, "thresholds": "none", "invariant": {"ok": False},
        "keepalive": None, "errors": [], "verdict": None,
    }
    series = ["junk", {"elapsed_s": "soon", "open": "many", "latency_ms": [], "close_codes": None}, {}]
    document = render(odd, series)  # type: ignore[arg-type]
    assert "Accounting is broken" in document
    assert "<svg" in document


def test_partial_sections() -> None:
    report = make_report()
    del report["sessions"]["by_phase"]
    report["latency_ms"] = {"auth": {"count": 0, "p50": None}}
    report["saturation"]["valid"] = False
    text = " ".join(parse(render(report, [])).text)
    assert "Outcomes by phase" not in text
    assert "the load generator was saturated" in text.lower()


# ---------------------------------------------------------------- escaping and self-containment


def hostile_report() -> dict[str, Any]:
    report = make_report()
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    report["run"]["host"] = evil
    report["run"]["profile"] = evil
    report["run"]["settings"] = {evil: evil, "quote": '"><b>'}
    report["close_codes"][0]["reason"] = evil
    report["close_codes"][0]["phase"] = evil
    report["sessions"]["outcomes"][evil] = 1
    report["sessions"]["by_phase"][evil] = {evil: 1}
    report["errors"] = {evil: 1}
    report["thresholds"][0]["expr"] = evil
    report["thresholds"][0]["note"] = evil
    report["thresholds"][0]["op"] = evil
    report["latency_ms"][evil] = {"count": 1}
    report["survival"][evil] = {"rate": 1.0}
    report["drift"]["first"][evil] = {"p50": 1.0}
    report["verdict"] = evil
    return report


def hostile_series() -> list[dict[str, Any]]:
    rows = make_series(3)
    evil = "<script>alert(2)</script>"
    for row in rows:
        row["close_codes"][evil] = 1
        row["latency_ms"][evil] = {"p50": 1.0}
    return rows


def test_every_string_from_the_report_is_escaped() -> None:
    document = render(hostile_report(), hostile_series())
    tags = parse(document)
    assert {tag for tag, _ in tags.tags} <= ALLOWED_TAGS
    assert all(not name.startswith("on") for _, attrs in tags.tags for name in attrs)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in document
    assert "<script" not in document and "<img" not in document and "<b>" not in document


def test_the_document_fetches_nothing() -> None:
    document = render(make_report(), make_series())
    tags = parse(document)
    assert not [attrs for _, attrs in tags.tags if {"src", "href", "xlink:href", "srcset"} & set(attrs)]
    assert {tag for tag, _ in tags.tags} <= ALLOWED_TAGS
    assert "@import" not in document and "url(" not in document
    csp = [a["content"] for t, a in tags.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == ["default-src 'none'; style-src 'unsafe-inline'"]


def test_render_does_not_modify_its_inputs() -> None:
    report, series = make_report(), make_series(5)
    before = copy.deepcopy((report, series))
    render(report, series)
    assert (report, series) == before


# ---------------------------------------------------------------- real headless Chromium


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()

MEASURE_JS = """(() => {
  const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    const text = cls => { const t = svg.querySelector('text.' + cls); if (!t) return 0; const r = t.getBoundingClientRect(); return Math.max(r.width, r.height); };
    return {
      title: svg.querySelector('title').textContent,
      width: box.width, height: box.height,
      lines: [...svg.querySelectorAll('polyline.series')].map(p => p.getTotalLength()),
      xLabel: text('x-label'), yLabel: text('y-label'),
      texts: svg.querySelectorAll('text').length,
    };
  });
  return {charts, scripts: document.scripts.length, verdict: document.getElementById('verdict').textContent};
})()"""


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands, and events kept by session."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"id": next(self.ids), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=15))
            if reply.get("id") == message["id"]:
                assert "error" not in reply, reply["error"]
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))))

    def drain(self, seconds: float) -> None:
        try:
            while True:
                self.events.append(json.loads(self.ws.recv(timeout=seconds)))
        except TimeoutError:
            pass


def problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions, failed loads and any non-local request."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            found.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            found.append(f"log {params['entry']['level']}: {params['entry']['text']}")
        elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith(("file:", "data:")):
            found.append(f"request: {params['request']['url']}")
        elif method == "Network.loadingFailed":
            found.append(f"failed load: {params.get('errorText') or params.get('blockedReason')}")
    return found


@pytest.fixture()
def chromium(tmp_path: Path) -> Any:
    """A headless Chromium with the DevTools protocol on a free port; yields (DevTools, log path)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    executable: str = CHROMIUM
    from websockets.sync.client import connect
    profile, log_path = tmp_path / "profile", tmp_path / "chromium.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--remote-debugging-port=0", "--window-size=1200,900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while True:
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) >= 2:
                break
            assert proc.poll() is None, f"chromium exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port within 30 s"
            time.sleep(0.05)
        with connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=10) as ws:
            devtools = DevTools(ws)
            yield devtools, log_path
            devtools.call("Browser.close")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def open_page(devtools: DevTools, url: str) -> tuple[dict[str, Any], list[str]]:
    target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        devtools.call(f"{domain}.enable", session=session)
    devtools.events.clear()
    devtools.call("Page.navigate", {"url": url}, session=session)
    devtools.wait_for("Page.loadEventFired", session)
    result = devtools.call("Runtime.evaluate", {"expression": MEASURE_JS, "returnByValue": True}, session=session)
    devtools.drain(0.3)  # late console messages
    events = [e for e in devtools.events if e.get("sessionId") == session]
    devtools.call("Target.closeTarget", {"targetId": target})
    return result, problems(events)


def test_chromium_renders_the_charts_without_errors(chromium: Any, tmp_path: Path) -> None:
    devtools, log_path = chromium
    full = tmp_path / "full-report.html"
    full.write_text(render(hostile_report() | {"verdict": "fail"}, hostile_series()), encoding="utf-8")
    empty = tmp_path / "empty-report.html"
    empty.write_text(render({}, []), encoding="utf-8")
    control = tmp_path / "control.html"  # proves that the checks below can fail
    control.write_text(
        "<!DOCTYPE html><html><body><div id=verdict>x</div>"
        "<script>console.error('control error'); throw new Error('control exception')</script>"
        "<img src='http://127.0.0.1:9/nothing.png'></body></html>",
        encoding="utf-8",
    )

    result, found = open_page(devtools, full.as_uri())
    assert found == []
    page = result["result"]["value"]
    assert page["scripts"] == 0  # the hostile strings stayed text
    assert page["verdict"].startswith("FAIL")
    assert [c["title"] for c in page["charts"]] == [
        "Open sessions",
        "Sessions started, authenticated and ended per minute",
        "Latency of the auth phase",
        "Latency of the message phase",
        '<script>alert(2)</script>'.join(["Latency of the ", " phase"]),
        "Drops and close codes per minute",
        "Reconnects per minute",
        "Load generator CPU",
    ]
    for chart in page["charts"]:
        assert chart["width"] > 500 and chart["height"] > 200, chart
        assert chart["xLabel"] > 20 and chart["yLabel"] > 20, chart
        assert chart["texts"] >= 8, chart
        assert chart["lines"] and all(length > 50 for length in chart["lines"]), chart

    result, found = open_page(devtools, empty.as_uri())
    assert found == []
    assert result["result"]["value"]["charts"] == []

    _, found = open_page(devtools, control.as_uri())
    assert any("control error" in p for p in found)
    assert any(p.startswith("exception:") for p in found)
    assert any(p.startswith("request: http://127.0.0.1:9/") for p in found)

    console_lines = [line for line in log_path.read_text(errors="replace").splitlines() if ":CONSOLE" in line]
    assert any("control.html" in line for line in console_lines)
    assert not [line for line in console_lines if "report.html" in line]


def test_a_run_ending_mid_window_does_not_show_a_false_spike_in_rates() -> None:
    from loadkit.report.html.charts import per_minute

    rows = [{"window_s": 2.0, "ended": 10}, {"window_s": 2.0, "ended": 10}, {"window_s": 2.0, "ended": 10},
            {"window_s": 0.04, "ended": 20}]  # the run stopped 40 ms into a window; its open sessions ended
    xs = [2.0, 4.0, 6.0, 6.04]
    assert per_minute(rows, xs, lambda r: r["ended"]) == [300.0, 300.0, 300.0, 600.0]
