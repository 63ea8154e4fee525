"""JUnit XML: one case per threshold (failure with value and limit, not measured as skipped), plus validity."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from loadkit.report.junit import render_junit

REPORT = {
    "run": {"host": "http://127.0.0.1:1", "profile": "guest", "duration_s": 30.0, "seed": 7},
    "thresholds": [
        {"expr": "auth.p95 < 300", "metric": "auth.p95", "op": "<", "limit": 300.0, "value": 4.5,
         "passed": True, "status": "pass"},
        {"expr": "drops == 0", "metric": "drops", "op": "==", "limit": 0.0, "value": 3, "passed": False,
         "status": "fail"},
        {"expr": "survival.30m > 0.99", "metric": "survival.30m", "op": ">", "limit": 0.99, "value": None,
         "passed": None, "status": "not_measured", "note": "not measured (no session was still at risk at 30m)"},
        {"expr": "reconnect.p95 < 5000", "metric": "reconnect.p95", "op": "<", "limit": 5000.0, "value": None,
         "passed": True, "status": "vacuous", "note": "holds vacuously (no reconnect attempt)"},
    ],
    "validity": {"checks": [
        {"name": "accounting", "ok": True, "detail": "sessions started 9 = ended 9 + open 0", "fails_as": "error"},
        {"name": "workers", "ok": False, "detail": "1 of 3 worker(s) did not: w2 lost", "fails_as": "invalid"},
    ]},
    "verdict": "invalid",
    "verdict_reason": "workers: 1 of 3 worker(s) did not: w2 lost",
}


def cases(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    return {f"{c.get('classname')}/{c.get('name')}": c for c in root.iter("testcase")}


def test_each_threshold_is_a_case_failures_carry_value_and_limit_and_not_measured_is_skipped() -> None:
    xml = render_junit(REPORT)
    got = cases(xml)
    assert got["loadkit.thresholds/auth.p95 < 300"].find("failure") is None
    failure = got["loadkit.thresholds/drops == 0"].find("failure")
    assert failure is not None and failure.get("message") == "drops = 3, limit == 0"
    skipped = got["loadkit.thresholds/survival.30m > 0.99"].find("skipped")
    assert skipped is not None and "still at risk" in skipped.get("message", "")
    vacuous = got["loadkit.thresholds/reconnect.p95 < 5000"]
    assert vacuous.find("failure") is None and vacuous.find("skipped") is None
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")


def test_validity_checks_and_the_verdict_are_cases_too() -> None:
    got = cases(render_junit(REPORT))
    assert got["loadkit.validity/accounting"].find("failure") is None
    assert "w2 lost" in got["loadkit.validity/workers"].find("failure").get("message", "")  # type: ignore[union-attr]
    assert got["loadkit.validity/verdict"].find("failure").get("type") == "invalid"  # type: ignore[union-attr]
    broken = {**REPORT, "validity": {"checks": [{"name": "accounting", "ok": False, "detail": "9 != 8 + 0",
                                                 "fails_as": "error"}]}}
    assert cases(render_junit(broken))["loadkit.validity/accounting"].find("error") is not None


def test_strings_from_the_report_are_escaped() -> None:
    evil = {**REPORT, "thresholds": [{**REPORT["thresholds"][1], "expr": 'drops < 1 <x y="&">'}]}
    xml = render_junit(evil)
    assert 'loadkit.thresholds/drops < 1 <x y="&">' in cases(xml)


def test_a_passing_run_has_no_failures() -> None:
    ok = {**REPORT, "thresholds": REPORT["thresholds"][:1], "validity": {"checks": REPORT["validity"]["checks"][:1]},
          "verdict": "pass"}
    root = ET.fromstring(render_junit(ok))
    assert not list(root.iter("failure")) and not list(root.iter("error"))
