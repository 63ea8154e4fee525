"""Verdicts and exit codes on real runs; results survive SIGKILL and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from loadkit.report.build import verdict_of
from tests.harness import LAG_ASIDE, ROOT, assert_matches_gateway, locust_command, run_locust, settled_stats

pytestmark = pytest.mark.slow

FAST = ("--session-seconds", "1.5-2.5", "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
        "--guest-pause", "0-0.2", *LAG_ASIDE)


def rows_by_expr(report):
    return {t["expr"]: t for t in report["thresholds"]}


def test_thresholds_pass_and_fail_on_a_run_with_faults_chosen_to_breach_them(tmp_path, gateway_factory):
    gw = gateway_factory(**{"faults.auth_latency": "fixed:50", "faults.drop_fraction": 0.5,
                            "faults.drop_after_s": "0.1,0.6", "faults.drop_code": 1011}, seed=4)
    # auth.p95 against the fixed 50 ms: "< 40" must fail; the passing bound is loose because p95 of
    # about 40 samples is the second highest, and on a busy machine that is the gateway's scheduling.
    passing = ["auth.p95 < 1000", "drop_rate < 0.95", "close.4008.count == 0", "survival.1s < 0.99",
               "outcome.auth_refused.rate < 0.001", "reconnect.p95 < 5000", "sessions.started > 5"]
    failing = ["auth.p95 < 40", "drop_rate < 0.01", "close.1011.count == 0", "drops_per_session_hour < 0.5",
               "outcome.dropped_by_server.rate < 0.001", "survival.1s > 0.99", "reconnect.p95 < 1"]
    args = [a for expr in passing + failing for a in ("--threshold", expr)]
    run = run_locust(tmp_path, "--host", gw.url, *FAST, "--survival-marks", "1s", "--reconnect-backoff", "0.1-0.3",
                     *args, "--loadkit-junit", str(tmp_path / "junit.xml"), users=8, run_time="5s")
    assert run.returncode == 3, run.stderr[-2000:]
    import xml.etree.ElementTree as ET

    junit = ET.parse(tmp_path / "junit.xml").getroot()
    failed = {c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None}
    assert set(failing) | {"verdict"} == failed
    report = run.report
    assert_matches_gateway(report, settled_stats(gw))
    rows = rows_by_expr(report)
    for expr in passing:
        assert rows[expr]["passed"] is True, rows[expr]
    for expr in failing:
        assert rows[expr]["passed"] is False, rows[expr]
    assert report["verdict"] == "fail"
    assert "threshold FAIL: close.1011.count == 0" in run.stdout


def test_a_clean_run_with_thresholds_passes_with_exit_code_0(tmp_path, gateway):
    run = run_locust(tmp_path, "--host", gateway.url, *FAST, "--threshold", "auth.p99 < 500",
                     "--threshold", "drop_rate == 0", "--threshold", "close.1011.count == 0",
                     "--loadkit-html", str(tmp_path / "report.html"), users=4, run_time="3s")
    assert run.returncode == 0, (run.report or {}).get("verdict_reason")
    assert run.report["verdict"] == "pass"
    html = (tmp_path / "report.html").read_text()
    assert "<svg" in html and "auth.p99 &lt; 500" in html


def test_abort_on_breach_stops_at_once_on_a_settled_breach_even_inside_the_grace(tmp_path, gateway_factory):
    gw = gateway_factory(**{"faults.drop_fraction": 1.0, "faults.drop_after_s": "0.1,0.3", "faults.drop_code": 1011})
    started = time.monotonic()
    run = run_locust(tmp_path, "--host", gw.url, *FAST, "--threshold", "close.1011.count == 0",
                     "--abort-on-breach", "--breach-grace", "60", users=4, run_time="30s")
    # it did not run out its 30 s (the wall clock includes Locust's start-up, seconds on a busy
    # machine); how soon it stopped is the harness's own figure, after_s, bounded below
    assert time.monotonic() - started < 30
    assert run.returncode == 3
    aborted = run.report["run"]["aborted"]
    assert aborted["by"] == "breach" and "close.1011.count == 0" in aborted["why"]
    assert aborted["after_s"] < 10 and aborted["planned_s"] == 30
    assert run.report["verdict"] == "fail"


def test_abort_on_breach_waits_the_grace_for_a_breach_that_may_recover(tmp_path, gateway_factory):
    """A percentile may come back under its limit: it must stay breached for --breach-grace first."""
    gw = gateway_factory(**{"faults.auth_latency": "fixed:40"})
    run = run_locust(tmp_path, "--host", gw.url, *FAST, "--threshold", "auth.p95 < 5",
                     "--abort-on-breach", "--breach-grace", "4", users=4, run_time="30s")
    assert run.returncode == 3, run.stderr[-2000:]
    aborted = run.report["run"]["aborted"]
    assert aborted["by"] == "breach" and "auth.p95 < 5" in aborted["why"]
    assert 4 <= aborted["after_s"] < 15, aborted


def test_a_saturated_load_generator_makes_the_run_invalid(tmp_path, gateway):
    # Any CPU use above 0.01 % counts as saturated here: the verdict logic is real, the bar is low.
    run = run_locust(tmp_path, "--host", gateway.url, *FAST, "--saturation-cpu", "0.01",
                     "--saturation-limit", "0.1", users=4, run_time="6s")
    assert run.returncode == 4, run.stderr[-2000:]
    sat = run.report["saturation"]
    assert sat["samples"] >= 1 and sat["share_saturated"] > 0.1 and not sat["valid"]
    assert run.report["verdict"] == "invalid"


def test_broken_accounting_is_a_harness_error():
    report = {"sessions": {"outcomes": {"closed_normally": 3}}, "invariant": {"ok": False}}
    assert verdict_of(report) == "error"
    report = {"sessions": {"outcomes": {"harness_error": 1}}, "invariant": {"ok": True}}
    assert verdict_of(report) == "error"


def _start(tmp_path, gateway_url, *extra):
    cmd = locust_command("--headless", "-u", "4", "-r", "10", "-t", "60s", "--host", gateway_url, *FAST,
                         "--loadkit-series", str(tmp_path / "series.jsonl"), "--series-interval", "1",
                         "--loadkit-report", str(tmp_path / "report.json"), "--only-summary", *extra)
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _wait_for_windows(path, n, timeout=30.0):
    """Until the run has written n series windows: it is under way (Locust starts slowly on a busy box)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"the run wrote fewer than {n} windows in {timeout} s")


def test_the_time_series_survives_a_sigkill_of_the_run(tmp_path, gateway):
    proc = _start(tmp_path, gateway.url)
    try:
        _wait_for_windows(tmp_path / "series.jsonl", 3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = (tmp_path / "series.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    rows = [json.loads(line) for line in lines]  # every line complete
    assert [r["elapsed_s"] for r in rows] == sorted(r["elapsed_s"] for r in rows)
    assert sum(r["authenticated"] for r in rows) > 0
    assert not (tmp_path / "report.json").exists()  # killed: no report, but the windows are kept


@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "SIGINT (Ctrl-C)"), (signal.SIGTERM, "SIGTERM")])
def test_a_run_stopped_before_its_planned_time_writes_its_report_and_is_inconclusive(tmp_path, gateway, sig, name):
    proc = _start(tmp_path, gateway.url)
    try:
        _wait_for_windows(tmp_path / "series.jsonl", 2)
        proc.send_signal(sig)
        out, _err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["invariant"]["ok"]
    assert report["sessions"]["authenticated"] > 0
    assert report["sessions"]["open"] == 0
    assert_matches_gateway(report, settled_stats(gateway))
    assert b"loadkit summary" in out
    aborted = report["run"]["aborted"]
    assert aborted["by"] == "signal" and aborted["why"] == name, aborted
    assert 0 < aborted["after_s"] < 10 and aborted["planned_s"] == 60
    assert report["verdict"] == "inconclusive" and proc.returncode == 7
    interrupted = [c for c in report["validity"]["checks"] if c["name"] == "interrupted"]
    assert interrupted and not interrupted[0]["ok"]
    assert out.decode().rstrip().endswith("=" * 70)


def test_the_loadkit_summary_is_the_last_thing_on_the_terminal(tmp_path, gateway):
    """After Locust's final tables (which Locust writes to stderr): one terminal, both streams."""
    cmd = locust_command("--headless", "-u", "2", "-r", "10", "-t", "2s", "--host", gateway.url, *FAST)
    proc = subprocess.run(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True)
    text = proc.stdout.decode()
    assert "Response time percentiles" in text and "Aggregated" in text
    assert text.rindex("=== loadkit summary") > text.rindex("Aggregated")
    assert text.rstrip().endswith("=" * 70), text[-3000:]


def test_drift_compares_the_last_windows_with_the_first_steady_ones(tmp_path):
    """A gateway whose auth gets slow after 9 s (a soak going bad): drift.auth.p95 breaches.

    About fifteen 1 s windows: each side of the comparison is five of them,
    merged (loadkit.metrics.drift; tests/test_drift_spans.py has the
    arithmetic). The spawn (4 guests at 2 a second) and the second after it
    are no first side: the first side begins with the first window that
    began once the spawn had completed and its last arrivals were in.

    The embedded gateway, so that its clock (degrade_at_s counts from its start) starts
    as the run does: a separate gateway started first would have degraded before a slow
    Locust start reached its first window.
    """
    run = run_locust(tmp_path, "--gateway-set", "faults.degrade_at_s=9",
                     "--gateway-set", "faults.degraded_auth_latency=fixed:100",
                     "--session-seconds", "0.1-0.2", "--guest-pause", "0-0.05",
                     "--threshold", "drift.auth.p95 < 1.2", "--threshold", "drift.connect.p95 < 50",
                     users=4, rate=2, run_time="15s")
    report = run.report
    assert report is not None, run.stderr[-2000:]
    assert_matches_gateway(report, report["gateway"])
    drift = report["drift"]
    assert drift["span_windows"] == min(5, drift["windows"] // 3), drift
    # the spawn ends about 1 s in, its last arrivals within 1 s after: window 2 at the earliest
    steady = drift["steady_from_window"]
    assert steady is not None and steady >= 2, drift
    first_auth, last_auth = drift["first"]["auth"], drift["last"]["auth"]
    assert first_auth["from_window"] == steady, drift  # sessions churn: auths in every window
    series, n = run.series, drift["span_windows"]
    assert len(series) == drift["windows"] and all("auth" in row["latency_ms"] for row in series[:steady])
    # the spawn's auths are left out: the first side is exactly the n windows from the first steady one
    assert first_auth["count"] == sum(row["latency_ms"]["auth"]["count"] for row in series[steady:steady + n])
    first, last = first_auth["p95"], last_auth["p95"]
    # the last windows waited the degraded 100 ms (plus what a busy machine adds: no upper guess)
    assert first < 50.0 and 100.0 <= last <= report["latency_ms"]["auth"]["max"], drift
    rows = rows_by_expr(report)
    assert rows["drift.auth.p95 < 1.2"]["value"] == pytest.approx(last / first, rel=1e-3)
    assert rows["drift.auth.p95 < 1.2"]["passed"] is False
    assert rows["drift.connect.p95 < 50"]["passed"] is True  # only auth degraded
    assert run.returncode == 3
