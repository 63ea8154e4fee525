"""The verdict, decided from a report alone: the worst true thing first; nothing measured never passes."""

from __future__ import annotations

from typing import Any

import pytest

from loadkit.lifecycle import Outcome, Phase, Result
from loadkit.metrics.recorder import Recorder
from loadkit.report.build import build_report, verdict_of, verdict_reason
from loadkit.report.exitcodes import ExitCode, verdict_exit_code
from loadkit.report.thresholds import evaluate


def report_of(rec: Recorder, thresholds: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    report = build_report(rec, open_sessions=0, run=kw.pop("run", {}), **kw)
    report["thresholds"] = evaluate(thresholds, report)
    report["verdict"] = verdict_of(report)
    report["verdict_reason"] = verdict_reason(report, report["verdict"])
    return report


def healthy(n: int = 10) -> Recorder:
    rec = Recorder(marks=(60,))
    for _ in range(n):
        rec.session_started()
        rec.session_authenticated()
        rec.observe("auth", 1500)
        rec.session_ended(Result(Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED, True), 90.0, (1000, "", "client"))
    return rec


def refused(n: int, detail: str = "HTTP 500", outcome: Outcome = Outcome.TOKEN_REFUSED) -> Recorder:
    rec = Recorder()
    for _ in range(n):
        rec.session_started()
        rec.session_ended(Result(outcome, Phase.TOKEN, False), 0.0, None, detail)
    return rec


@pytest.mark.parametrize("outcome, detail", [(Outcome.TOKEN_REFUSED, "HTTP 500"), (Outcome.UPGRADE_REFUSED, "HTTP 200"),
                                             (Outcome.AUTH_REFUSED, "close 4001")])
def test_nothing_authenticated_is_unreachable_and_names_the_dominant_failure(outcome: Outcome, detail: str) -> None:
    rec = refused(36, detail, outcome)
    rec.merge(refused(2, "HTTP 503", outcome))
    report = report_of(rec, ("auth.p95 < 300", "drops == 0"))
    assert report["verdict"] == "unreachable" and verdict_exit_code("unreachable") == ExitCode.TARGET_UNREACHABLE
    assert f"{outcome.value}: {detail} ×36" in report["verdict_reason"]
    assert report["sessions"]["failures"][outcome.value] == {detail: 36, "HTTP 503": 2}


def test_a_healthy_run_passes_and_a_gate_with_nothing_to_measure_is_inconclusive() -> None:
    assert report_of(healthy(), ("auth.p95 < 300",))["verdict"] == "pass"
    report = report_of(healthy(), ("auth.p95 < 300", "message.p95 < 300", "survival.5m > 0.99"))
    assert report["verdict"] == "inconclusive" and verdict_exit_code("inconclusive") == 7
    assert "not measured: message.p95 < 300" in report["verdict_reason"]
    assert [t["status"] for t in report["thresholds"]] == ["pass", "not_measured", "not_measured"]


def test_reconnect_gates_hold_when_nothing_dropped() -> None:
    report = report_of(healthy(), ("reconnect.success_rate > 0.9", "reconnect.p95 < 5000"))
    assert report["verdict"] == "pass"
    assert {t["status"] for t in report["thresholds"]} == {"vacuous"}


def test_a_breach_outranks_a_gate_not_measured() -> None:
    report = report_of(healthy(), ("auth.p95 < 1", "message.p95 < 300"))
    assert report["verdict"] == "fail" and "breached: auth.p95 < 1" in report["verdict_reason"]


def test_no_session_at_all_is_not_a_pass() -> None:
    assert report_of(Recorder())["verdict"] == "inconclusive"


def test_an_interrupted_run_is_inconclusive_and_one_stopped_on_a_breach_fails() -> None:
    signal = {"by": "signal", "why": "SIGINT (Ctrl-C)", "after_s": 7.0, "planned_s": 60.0, "when": "x"}
    report = report_of(healthy(), run={"aborted": signal, "planned_s": 60.0})
    assert report["verdict"] == "inconclusive" and "SIGINT" in report["verdict_reason"]
    report = report_of(healthy(), run={"aborted": {**signal, "by": "breach", "why": "drops == 0"}})
    assert report["verdict"] == "fail"
    report = report_of(healthy(), run={"aborted": None, "planned_s": 60.0})
    assert report["verdict"] == "pass"
    assert {c["name"]: c["ok"] for c in report["validity"]["checks"]} == {"accounting": True, "interrupted": True}


def test_a_worker_that_left_early_makes_the_run_invalid() -> None:
    run = {"workers": {"count": 3, "lost": [], "left": [{"worker": "w2", "why": "left before the end of the run"}]}}
    report = report_of(healthy(), run=run)
    assert report["verdict"] == "invalid" and "w2" in report["verdict_reason"]
    report = report_of(healthy(), run={"workers": {"count": 3, "lost": [], "left": []}})
    assert report["verdict"] == "pass"


def test_broken_accounting_outranks_everything() -> None:
    report = build_report(refused(3), open_sessions=1, run={})
    report["thresholds"] = []
    assert verdict_of(report) == "error"
    assert "accounting violated" in verdict_reason(report, "error")
