"""The live figures' pure parts: the Prometheus exposition, the tab's rows, the gateway delta.

The end-to-end checks against the gateway are in test_prometheus.py and
test_web_ui_browser.py; these pin the arithmetic and the label vocabulary
quickly, from a Recorder filled the way the session driver fills it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadkit.lifecycle import Outcome, Phase, Result
from loadkit.locust.prometheus import BREACHED, HOLDING, NOT_MEASURED, registry_for
from loadkit.locust.testruns import gateway_delta, numbered
from loadkit.locust.webui import sparkline, tab_rows
from loadkit.metrics.recorder import Recorder
from loadkit.report.build import build_report
from loadkit.report.thresholds import parse_all


class FakeRuntime:
    """What the collector reads of the plugin's Runtime."""

    is_master = False

    def __init__(self, total: Recorder, open_now: int, thresholds: list[str]) -> None:
        self.total = total
        self.open_now = open_now
        self.thresholds = parse_all(thresholds)

    def collect_local(self) -> None:
        pass

    def open_sessions(self) -> int:
        return self.open_now

    def build(self, final: bool) -> dict[str, Any]:
        return build_report(self.total, open_sessions=self.open_now, run={})


def _recorder() -> Recorder:
    rec = Recorder()
    for _ in range(5):
        rec.session_started()
    for _ in range(4):
        rec.session_authenticated()
    rec.session_ended(Result(Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED, True), 12.0, (1000, "bye", "client"))
    rec.session_ended(Result(Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED, True), 3.0, (1011, "oops", "server"))
    rec.session_ended(Result(Outcome.DROPPED_BY_SERVER, Phase.JUST_AFTER_AUTH, True), 1.0, (1011, "x", "server"))
    rec.session_ended(Result(Outcome.AUTH_REFUSED, Phase.DURING_AUTH, False), 0.0, (64999, "weird", "server"))
    for us in (400, 900, 2_000, 60_000_000):
        rec.observe("auth", us)
    rec.bad_frames[("not_json", "established")] += 2
    rec.bad_frames[("not_json", "during_auth")] += 1
    rec.reconnect_attempts, rec.reconnect_successes = 2, 1
    return rec


def _samples(rt: FakeRuntime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry_for(rt)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_exposition_has_the_documented_names_labels_and_values():
    rt = FakeRuntime(_recorder(), open_now=1, thresholds=["auth.p95 < 100000", "drop_rate < 0.1",
                                                          "reconnect.p95 < 5"])
    s = _samples(rt)
    assert s[("loadkit_sessions_started_total", ())] == 5
    assert s[("loadkit_sessions_authenticated_total", ())] == 4
    assert s[("loadkit_sessions_open", ())] == 1
    assert s[("loadkit_drops_total", ())] == 2
    assert s[("loadkit_session_seconds_total", ())] == 16.0
    assert s[("loadkit_session_outcomes_total", (("outcome", "dropped_by_server"), ("phase", "established")))] == 1
    assert s[("loadkit_close_codes_total", (("code", "1011"), ("initiator", "server"), ("phase", "established")))] == 1
    # a code outside 1000-4999 is "other"; no reason label: the target chooses reasons
    assert s[("loadkit_close_codes_total", (("code", "other"), ("initiator", "server"), ("phase", "during_auth")))] == 1
    assert not any("reason" in dict(labels) for _, labels in s)
    assert s[("loadkit_bad_frames_total", (("kind", "not_json"),))] == 3
    assert s[("loadkit_reconnects_total", (("result", "attempted"),))] == 2
    assert s[("loadkit_reconnects_total", (("result", "succeeded"),))] == 1
    bucket = {dict(labels)["le"]: v for (name, labels), v in s.items()
              if name == "loadkit_phase_latency_seconds_bucket" and dict(labels)["phase"] == "auth"}
    assert (bucket["0.0005"], bucket["0.001"], bucket["0.0025"], bucket["30.0"], bucket["+Inf"]) == (1, 2, 3, 3, 4)
    assert s[("loadkit_phase_latency_seconds_sum", (("phase", "auth"),))] == (400 + 900 + 2_000 + 60_000_000) / 1e6
    states = {dict(labels)["threshold"]: v for (name, labels), v in s.items() if name == "loadkit_threshold_state"}
    assert states == {"auth.p95 < 100000": HOLDING, "drop_rate < 0.1": BREACHED, "reconnect.p95 < 5": NOT_MEASURED}


def test_the_tab_rows_say_what_the_report_says():
    rec = _recorder()
    report = build_report(rec, open_sessions=1, run={})
    windows = [{"open": n, "window_s": 2.0, "started": n, "authenticated": n, "ended": 1, "drops": 0}
               for n in (0, 2, 4)]
    checks = [{"expr": "auth.p95 < 1", "value": 2.0, "passed": False}, {"expr": "x", "value": None, "passed": None}]
    rows = {(r["section"], r["figure"]): r for r in tab_rows(report, windows, checks)}
    assert rows[("sessions", "open now")]["value"] == "1"
    assert rows[("sessions", "open now")]["detail"] == "started 5 = ended 4 + open 1"
    assert rows[("sessions", "open over time")]["value"] == "▁▅█"
    assert rows[("drops", "drop rate")]["value"] == "50.00 %"
    assert rows[("close codes", "1011 oops")]["detail"] == "established, closed by server"
    p95 = rec.latency["auth"].percentile(95) / 1000  # the bucket's lowest value: within 0.1 % of 60 s
    assert abs(p95 - 60000) < 60
    assert rows[("latency ms", "auth p50 / p95 / p99")]["value"] == f"0.900 / {p95:.3f} / {p95:.3f}"
    assert rows[("thresholds", "auth.p95 < 1")]["detail"] == "BREACHED"
    assert rows[("thresholds", "x")]["detail"] == "not measured yet"
    assert sparkline([]) == "" and sparkline([0, 0]) == "▁▁"


def test_the_gateway_record_of_one_test_is_the_delta_of_its_counters():
    before = {"sessions": {"opened": 10, "authenticated": 9, "open": 0, "closed": 10},
              "closes": [{"code": 1000, "reason": "", "initiator": "client", "phase": "authenticated", "count": 9},
                         {"code": 1011, "reason": "x", "initiator": "server", "phase": "authenticated", "count": 1}],
              "faults": {"drop": {"1011": 1}}, "settings": {"seed": 1}}
    after = {"sessions": {"opened": 15, "authenticated": 13, "open": 2, "closed": 13},
             "closes": [{"code": 1000, "reason": "", "initiator": "client", "phase": "authenticated", "count": 12},
                        {"code": 1011, "reason": "x", "initiator": "server", "phase": "authenticated", "count": 1}],
             "faults": {"drop": {"1011": 1}}, "settings": {"seed": 1}}
    d = gateway_delta(before, after)
    assert d["sessions"] == {"opened": 5, "authenticated": 4, "open": 2, "closed": 3}
    assert d["closes"] == [{"code": 1000, "reason": "", "initiator": "client", "phase": "authenticated", "count": 3}]
    assert d["faults"] == {"drop": {"1011": 0}} and d["settings"] == {"seed": 1}
    assert gateway_delta(None, after) is after
    assert (numbered("out/report.json", 1), numbered("out/report.json", 3), numbered("", 2)) == (
        "out/report.json", "out/report-3.json", "")
