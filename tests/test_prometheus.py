"""Prometheus scrapes loadkit: a real Prometheus (Debian's), a real run with faults.

The test starts ``/usr/bin/prometheus`` on loopback with a generated config
that scrapes every second, runs loadkit against the embedded gateway with a
fault that drops sessions, queries Prometheus' HTTP API and compares what
it stored with the gateway's own record. Every PromQL expression of the
Grafana dashboard must be accepted by that Prometheus and return data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from loadkit.locust.prometheus import METRICS
from tests.harness import ROOT, codes_by, locust_command, processes_2, wait_until
from tests.liveui import (WebUI, assert_authenticated_matches, browser_form, free_port, gateway_url, get, get_json,
                          settled_gateway_stats)

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DASHBOARD = ROOT / "examples" / "grafana" / "loadkit-soak.json"
# The fault plan's seed is fixed: with a random one each session drew its drop with p = 0.4, and
# a busy machine's few sessions could show none. Seed 107 plans drops for the gateway's sessions
# 0-3 (FaultPlan is keyed by (seed, session number): whatever order the guests come in).
FAULTS = ("--gateway-set", "faults.drop_fraction=0.4", "--gateway-set", "faults.drop_after_s=0.2,0.8",
          "--gateway-set", "seed=107")
FAST = ("--session-seconds", "1-2", "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
        "--guest-pause", "0-0.2", "--series-interval", "1")


class Prometheus:
    def __init__(self, tmp: Path, targets: dict[str, str]) -> None:
        if not os.path.exists(PROMETHEUS):
            pytest.skip("Debian's prometheus is not installed (apt-get install prometheus; .ci/run does)")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        jobs = "".join(f"  - job_name: {name}\n    static_configs:\n      - targets: ['{target}']\n"
                       for name, target in targets.items())
        config = tmp / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}")
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                get(self.base + "/-/ready")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("prometheus did not start: "
                                       + (tmp / "prometheus.log").read_text(errors="replace")) from None
                time.sleep(0.2)

    def api(self, path: str, **params: Any) -> Any:
        data = get_json(f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert data["status"] == "success", data
        return data["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def value(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def value_or_none(self, expr: str) -> float | None:
        """The single value of ``expr``, None while Prometheus has no sample of it yet."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def wait_value(self, expr: str, done: Any, timeout: float = 60) -> float | None:
        """``expr``'s value once ``done(value)`` holds (bounded): scrapes and worker reports come when they come."""
        return wait_until(lambda: self.value_or_none(expr), lambda v: v is not None and done(v), timeout, every=0.25)

    def by(self, expr: str, *labels: str) -> dict[tuple[Any, ...], float]:
        return {tuple(r["metric"].get(k) for k in labels): float(r["value"][1]) for r in self.query(expr)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _scraped(prom: Prometheus, job: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not prom.query(f'up{{job="{job}"}} == 1'):
        assert time.monotonic() < deadline, f"prometheus never scraped {job}: {prom.query('up')}"
        time.sleep(0.5)


def test_prometheus_stores_loadkits_counters_equal_to_the_gateways_record(tmp_path):
    metrics_port = free_port()
    (tmp_path / "ui").mkdir()
    (tmp_path / "headless").mkdir()
    (tmp_path / "prom").mkdir()
    with WebUI(tmp_path / "ui", *FAST, *FAULTS, *processes_2()) as ui:
        prom = Prometheus(tmp_path / "prom", {"ui": f"127.0.0.1:{ui.port}",
                                              "headless": f"127.0.0.1:{metrics_port}"})
        try:
            _scraped(prom, "ui")
            url = gateway_url(ui)
            start = time.time()
            form = browser_form(ui.page, users=6, rate=6, threshold="auth.p95 < 5000, drop_rate < 0.01")
            assert ui.swarm(form)["success"]
            # during the run: counters grow, sessions are open. Waited for, bounded: workers report
            # to the master every 3 s and Prometheus scrapes every second, later on a busy machine.
            started = 'loadkit_sessions_started_total{job="ui"}'
            first = prom.wait_value(started, lambda v: v > 0)
            assert first is not None and first > 0
            grown = prom.wait_value(started, lambda v: v > first)
            assert grown is not None and grown > first > 0
            assert prom.value('max_over_time(loadkit_sessions_open{job="ui"}[10s])') > 0
            assert prom.by('loadkit_workers{job="ui"}', "state").get(("running",), 0) == 2
            tab = get_json(ui.base + "/stats/requests")["extended_stats"][0]["data"]  # the master's tab
            assert [r["value"] for r in tab if r["section"] == "workers"] == ["running", "running"], tab
            ui.stop_test()
            assert ui.wait_state("stopped") == "stopped"
            truth = settled_gateway_stats(url)
            report = get_json(ui.base + "/loadkit/report")
            # until Prometheus has scraped the settled figures (bounded; it scrapes every second)
            ended = float(sum(report["sessions"]["outcomes"].values()))
            prom.wait_value(started, lambda v: v == ended, timeout=30)
            prom.wait_value('sum(loadkit_session_outcomes_total{job="ui"})', lambda v: v == ended, timeout=30)
            ui_sel = '{job="ui"}'
            ours = prom.by(f"sum by (code, initiator) (loadkit_close_codes_total{ui_sel})", "code", "initiator")
            theirs = {(str(c), i): float(n) for (c, i), n in codes_by(truth["closes"], "code", "initiator").items()}
            # the stop's own closes (1001 from us) can include guests the stop caught before they saw
            # the upgrade answer: the gateway got their close, they ended stopped_by_harness before_open
            caught = report["sessions"]["by_phase"].get("before_open", {}).get("stopped_by_harness", 0)
            ours_stop, gw_stop = ours.pop(("1001", "client"), 0.0), theirs.pop(("1001", "client"), 0.0)
            assert ours_stop <= gw_stop <= ours_stop + caught, (ours_stop, gw_stop, caught)
            assert ours == theirs
            authenticated = prom.value(f"loadkit_sessions_authenticated_total{ui_sel}")
            assert authenticated == report["sessions"]["authenticated"]
            assert_authenticated_matches(int(authenticated), truth["sessions"]["authenticated"], report)
            outcomes = prom.by(f"sum by (outcome) (loadkit_session_outcomes_total{ui_sel})", "outcome")
            assert outcomes == {(k,): float(v) for k, v in report["sessions"]["outcomes"].items()}
            drops_closed = sum(c["count"] for c in truth["closes"] if (c["code"], c["initiator"]) == (1011, "server"))
            assert outcomes[("dropped_by_server",)] == drops_closed > 0
            assert sum(outcomes.values()) == prom.value(f"loadkit_sessions_started_total{ui_sel}")
            assert prom.value(f"loadkit_drops_total{ui_sel}") == report["drops"]
            messages = prom.by(f"loadkit_messages_total{ui_sel}", "result")
            assert messages == {(k,): float(report["messages"][k])
                                for k in ("sent", "answered", "unanswered", "refused", "in_flight")}
            assert messages[("sent",)] > 0
            states = prom.by(f"loadkit_threshold_state{ui_sel}", "threshold")
            assert states == {("auth.p95 < 5000",): 1.0, ("drop_rate < 0.01",): 0.0}
            count = prom.value('loadkit_phase_latency_seconds_count{job="ui",phase="auth"}')
            assert count == report["latency_ms"]["auth"]["count"]
            _dashboard_queries_return_data(prom, start, time.time())
            names = {m["__name__"] for m in prom.api("series", **{"match[]": '{job="ui"}'})}
            families = {n.removesuffix(suffix) for n in names for suffix in ("_total", "_bucket", "_count", "_sum")
                        if n.endswith(suffix)} | names
            assert set(METRICS) - {"loadkit_bad_frames"} <= families  # no bad frames in this run

            # headless: --loadkit-metrics-port, loopback
            cmd = locust_command("--headless", "-u", "4", "-r", "4", "-t", "6s", "--only-summary", *FAST, *FAULTS,
                                 "--loadkit-metrics-port", str(metrics_port),
                                 "--loadkit-report", str(tmp_path / "headless" / "report.json"))
            proc = subprocess.Popen(cmd, cwd=tmp_path / "headless", stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(os.environ, PYTHONPATH=str(ROOT)))
            try:
                out, _ = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            assert proc.returncode == 0, out.decode()
            headless = json.loads((tmp_path / "headless" / "report.json").read_text())
            seen = prom.value('max_over_time(loadkit_sessions_started_total{job="headless"}[1m])')
            assert 0 < seen <= headless["sessions"]["started"]
        finally:
            prom.stop()


def _dashboard_queries_return_data(prom: Prometheus, start: float, end: float) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":  # the instance variable's own query
            exprs.append(var["query"]["query"].replace("label_values(", "group by (instance) (").replace(
                ", instance)", ")"))
    for expr in exprs:
        concrete = expr.replace("$__rate_interval", "5s").replace("$instance", ".*")
        result = prom.api("query_range", query=concrete, start=f"{start:.3f}", end=f"{end:.3f}", step="1")
        assert result["result"], f"no series for {expr!r} ({concrete!r})"
        values = [float(v) for series in result["result"] for _, v in series["values"]]
        if not [v for v in values if v == v]:
            # only NaN: a quantile of a histogram with no samples in this run (the generator
            # lag is recorded once the harness measures it); anything else is an error
            base = re.search(r"(loadkit_\w+)_bucket", expr)
            assert base, f"only NaN for {expr!r} ({concrete!r})"
            assert prom.value(f"max({base.group(1)}_count)") == 0, f"only NaN for {expr!r}"
