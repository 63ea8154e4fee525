"""Threshold expressions: parsing, error messages, evaluation on synthetic reports."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadkit.report.thresholds import (
    Threshold,
    ThresholdError,
    evaluate,
    evaluate_partial,
    parse,
    parse_all,
    parse_metric,
)
from loadkit.report.thresholds.names import METRIC_FORMS as FORMS


def make_report() -> dict[str, Any]:
    """A finished report shaped as in docs/report-schema.md, with round numbers."""
    latency = {"count": 200, "min": 0.5, "mean": 2.0, "p50": 1.5, "p90": 3.0, "p95": 4.0, "p99": 8.0, "max": 12.0}
    return {
        "loadkit_version": "0.1.0",
        "run": {"duration_s": 600.0, "host": "http://127.0.0.1:1", "profile": "guest", "users": 50},
        "sessions": {
            "started": 200,
            "authenticated": 196,
            "open": 0,
            "outcomes": {"closed_normally": 180, "dropped_by_server": 4, "stopped_by_harness": 12, "auth_refused": 4},
            "by_phase": {"during_auth": {"auth_refused": 4}},
        },
        "invariant": {"ok": True, "started": 200, "ended": 200, "open": 0},
        "close_codes": [
            {"phase": "during_auth", "code": 4008, "reason": "auth timeout", "initiator": "server", "count": 2},
            {"phase": "established", "code": 4008, "reason": "auth timeout", "initiator": "server", "count": 1},
            {"phase": "established", "code": 1000, "reason": "", "initiator": "client", "count": 180},
            {"phase": "established", "code": 1006, "reason": "", "initiator": "none", "count": 4},
        ],
        "drops": 4,
        "drop_rate": 0.02,
        "session_hours": 8.0,
        "drops_per_session_hour": 0.5,
        "latency_ms": {phase: dict(latency) for phase in ("token", "connect", "auth", "message", "ping", "reply")},
        "reconnect": {
            "attempts": 10,
            "successes": 9,
            "recover_ms": {"count": 9, "p50": 800.0, "p95": 2500.0, "p99": 3000.0, "max": 3100.0},
        },
        "survival": {
            "1m": {"reached": 190, "eligible": 200, "rate": 0.95},
            "5m": {"reached": 99, "eligible": 100, "rate": 0.99},
            "60m": {"reached": 9, "eligible": 10, "rate": 0.9},
            "90s": {"reached": 150, "eligible": 160},
        },
        "keepalive": {"missed_pongs": 0, "timeouts": 1},
        "drift": {
            "window_s": 60,
            "first": {"auth": {"p50": 1.0, "p95": 2.0, "p99": 4.0}},
            "last": {"auth": {"p50": 1.1, "p95": 3.0, "p99": 4.0}},
        },
        "verdict": "pass",
    }


REPORT = make_report()


def value_of(expr: str, report: dict[str, Any] = REPORT) -> Any:
    (row,) = evaluate([expr], report)
    return row["value"]


def passed(expr: str, report: dict[str, Any] = REPORT) -> bool:
    (row,) = evaluate([expr], report)
    return row["passed"]


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "expr, metric, op, limit",
    [
        ("auth.p95 < 300", "auth.p95", "<", 300.0),
        ("drop_rate < 0.01", "drop_rate", "<", 0.01),
        ("drops_per_session_hour < 0.5", "drops_per_session_hour", "<", 0.5),
        ("close.1011.count == 0", "close.1011.count", "==", 0.0),
        ("close.4008.rate < 0.01", "close.4008.rate", "<", 0.01),
        ("close.4008.during_auth.count <= 3", "close.4008.during_auth.count", "<=", 3.0),
        ("outcome.auth_refused.rate < 0.001", "outcome.auth_refused.rate", "<", 0.001),
        ("outcome.closed_normally.count >= 10", "outcome.closed_normally.count", ">=", 10.0),
        ("reconnect.p95 < 5000", "reconnect.p95", "<", 5000.0),
        ("reconnect.success_rate > 0.9", "reconnect.success_rate", ">", 0.9),
        ("survival.30m > 0.99", "survival.30m", ">", 0.99),
        ("survival.1h > 0.99", "survival.60m", ">", 0.99),
        ("survival.90s > 0.5", "survival.90s", ">", 0.5),
        ("drift.auth.p95 < 1.2", "drift.auth.p95", "<", 1.2),
        ("sessions.started > 100", "sessions.started", ">", 100.0),
        ("keepalive.missed_pongs == 0", "keepalive.missed_pongs", "==", 0.0),
        ("keepalive.timeouts != 3", "keepalive.timeouts", "!=", 3.0),
        ("token.p50<1e3", "token.p50", "<", 1000.0),
        ("  Auth.P99   >=  -1  ", "auth.p99", ">=", -1.0),
    ],
)
def test_parse_reads_metric_operator_and_limit(expr: str, metric: str, op: str, limit: float) -> None:
    threshold = parse(expr)
    assert (threshold.metric.name, threshold.op, threshold.limit) == (metric, op, limit)
    assert threshold.expr == " ".join(expr.split())


def test_parse_accepts_every_phase_and_statistic() -> None:
    for phase in ("token", "connect", "auth", "message", "ping", "reply"):
        for stat in ("p50", "p90", "p95", "p99", "max", "min", "mean", "count"):
            assert parse(f"{phase}.{stat} < 1").metric.name == f"{phase}.{stat}"


def test_parse_all_parses_in_order() -> None:
    assert [t.expr for t in parse_all(["auth.p95 < 3", "drops == 0"])] == ["auth.p95 < 3", "drops == 0"]


def test_parse_metric_gives_canonical_names() -> None:
    assert parse_metric("survival.1h") == parse_metric("survival.60m")
    assert parse_metric("close.01011.count").name == "close.1011.count"


@pytest.mark.parametrize(
    "expr, message",
    [
        ("", 'threshold "": empty expression (expected METRIC OP NUMBER, e.g. "auth.p95 < 300")'),
        ("auth.p95 300", 'threshold "auth.p95 300": no comparison operator (expected METRIC OP NUMBER with OP one of <, <=, >, >=, ==, !=)'),
        ("auth.p95 = 3", 'threshold "auth.p95 = 3": unknown operator "=" (expected one of <, <=, >, >=, ==, !=)'),
        ("auth.p95 =< 3", 'threshold "auth.p95 =< 3": unknown operator "=<" (expected one of <, <=, >, >=, ==, !=)'),
        ("< 3", 'threshold "< 3": missing metric before "<" (e.g. "auth.p95 < 300")'),
        ("auth.p95 <", 'threshold "auth.p95 <": missing number after "<" (e.g. "auth.p95 < 300")'),
        ("auth.p95 < 300ms", 'threshold "auth.p95 < 300ms": limit "300ms" is not a finite number (write a plain number: milliseconds for latencies, a fraction for rates)'),
        ("auth.p95 < nan", 'threshold "auth.p95 < nan": limit "nan" is not a finite number (write a plain number: milliseconds for latencies, a fraction for rates)'),
        ("300 > auth.p95", 'threshold "300 > auth.p95": the metric must be on the left (write "auth.p95 < 300")'),
        ("auth.p96 < 3", 'threshold "auth.p96 < 3": unknown statistic "p96" (expected one of p50, p90, p95, p99, max, min, mean, count)'),
        ("auht.p95 < 3", 'threshold "auht.p95 < 3": unknown latency phase "auht" (expected one of token, connect, auth, message, ping, reply)'),
        ("auth < 3", 'threshold "auth < 3": "auth" needs a statistic (e.g. auth.p95; expected one of p50, p90, p95, p99, max, min, mean, count)'),
        ("auth.p95.x < 3", 'threshold "auth.p95.x < 3": unknown metric "auth.p95.x" (expected ' + FORMS + ')'),
        ("droprate < 0.1", 'threshold "droprate < 0.1": unknown metric "droprate" (expected ' + FORMS + ')'),
        ("close < 1", 'threshold "close < 1": "close" needs a close code and .count or .rate (e.g. close.1011.count == 0)'),
        ("close.abc.count == 0", 'threshold "close.abc.count == 0": close code "abc" is not a number (expected a WebSocket close code 1000-4999, e.g. close.1011.count)'),
        ("close.999.count == 0", 'threshold "close.999.count == 0": close code "999" is out of range (expected 1000-4999, e.g. close.1011.count)'),
        ("close.1011 == 0", 'threshold "close.1011 == 0": "close.1011" needs .count or .rate (e.g. close.1011.count == 0)'),
        ("close.1011.sum == 0", 'threshold "close.1011.sum == 0": unknown close statistic "sum" (expected count or rate, e.g. close.1011.count)'),
        ("close.1011.a.b.count == 0", 'threshold "close.1011.a.b.count == 0": unknown metric "close.1011.a.b.count" (expected close.CODE.count|rate or close.CODE.PHASE.count|rate)'),
        ("close.1011.9x.count == 0", 'threshold "close.1011.9x.count == 0": close phase "9x" is not a valid name (expected e.g. close.1011.during_auth.count)'),
        ("outcome < 1", 'threshold "outcome < 1": "outcome" needs a name and .count or .rate (e.g. outcome.auth_refused.rate < 0.001)'),
        ("outcome.auth_refused < 1", 'threshold "outcome.auth_refused < 1": "outcome.auth_refused" needs .count or .rate (e.g. outcome.auth_refused.rate < 0.001)'),
        ("outcome.auth_refused.sum < 1", 'threshold "outcome.auth_refused.sum < 1": unknown outcome statistic "sum" (expected count or rate, e.g. outcome.auth_refused.rate)'),
        ("outcome.a-b.count < 1", 'threshold "outcome.a-b.count < 1": outcome name "a-b" is not a valid name (expected letters, digits and _, e.g. outcome.auth_refused.count)'),
        ("outcome.a.b.count < 1", 'threshold "outcome.a.b.count < 1": unknown metric "outcome.a.b.count" (expected outcome.NAME.count, outcome.NAME.rate or outcome.NAME.unexpected.count|rate)'),
        ("reconnect < 1", 'threshold "reconnect < 1": "reconnect" needs a statistic (e.g. reconnect.p95; expected one of p50, p90, p95, p99, max, min, mean, count, attempts, successes, not_resumed, success_rate)'),
        ("reconnect.p96 < 1", 'threshold "reconnect.p96 < 1": unknown reconnect metric "p96" (expected one of p50, p90, p95, p99, max, min, mean, count, attempts, successes, not_resumed, success_rate)'),
        ("survival > 0.9", 'threshold "survival > 0.9": "survival" needs a mark (e.g. survival.30m > 0.99)'),
        ("survival.30x > 0.9", 'threshold "survival.30x > 0.9": survival mark "30x" is not a duration (expected a number with s, m or h, e.g. 90s, 5m, 1h)'),
        ("survival.0m > 0.9", 'threshold "survival.0m > 0.9": survival mark "0m" must be longer than zero (e.g. survival.30m)'),
        ("survival.30m.rate > 0.9", 'threshold "survival.30m.rate > 0.9": unknown metric "survival.30m.rate" (expected survival.MARK or survival.MARK.lower|upper|at_risk, e.g. survival.30m, survival.5m.lower)'),
        ("drift < 1", 'threshold "drift < 1": "drift" needs a phase and a statistic (e.g. drift.auth.p95 < 1.2)'),
        ("drift.auth < 1", 'threshold "drift.auth < 1": "drift.auth" needs a statistic (e.g. drift.auth.p95 < 1.2; expected one of p50, p90, p95, p99, max, min, mean)'),
        ("drift.login.p95 < 1", 'threshold "drift.login.p95 < 1": unknown latency phase "login" (expected one of token, connect, auth, message, ping, reply)'),
        ("drift.auth.count < 1", 'threshold "drift.auth.count < 1": unknown drift statistic "count" (expected one of p50, p90, p95, p99, max, min, mean)'),
        ("drift.auth.p95.x < 1", 'threshold "drift.auth.p95.x < 1": unknown metric "drift.auth.p95.x" (expected drift.PHASE.STAT, e.g. drift.auth.p95)'),
        ("sessions > 1", 'threshold "sessions > 1": "sessions" needs a metric (e.g. sessions.started; expected one of started, authenticated, open)'),
        ("sessions.ended > 1", 'threshold "sessions.ended > 1": unknown sessions metric "ended" (expected one of started, authenticated, open)'),
        ("keepalive.pings == 0", 'threshold "keepalive.pings == 0": unknown keepalive metric "pings" (expected one of missed_pongs, timeouts, pings_sent, pongs, refused, in_flight)'),
    ],
)
def test_parse_errors_say_what_is_wrong_and_how_to_fix_it(expr: str, message: str) -> None:
    with pytest.raises(ThresholdError) as excinfo:
        parse(expr)
    assert str(excinfo.value) == message
    assert "\n" not in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_error_messages_stay_on_one_line_when_the_expression_has_newlines() -> None:
    assert parse("auth.p95\n<\t3").expr == "auth.p95 < 3"
    with pytest.raises(ThresholdError) as excinfo:
        parse("auth.p96\n< 3")
    assert str(excinfo.value).startswith('threshold "auth.p96 < 3": unknown statistic')


def test_threshold_error_carries_expression_and_problem() -> None:
    with pytest.raises(ThresholdError) as excinfo:
        parse("auth.p96 < 3")
    assert excinfo.value.expr == "auth.p96 < 3"
    assert excinfo.value.problem.startswith('unknown statistic "p96"')


# ---------------------------------------------------------------- evaluation, family by family


@pytest.mark.parametrize(
    "metric, value",
    [
        ("auth.p95", 4.0),
        ("token.p50", 1.5),
        ("connect.p90", 3.0),
        ("message.p99", 8.0),
        ("ping.max", 12.0),
        ("reply.min", 0.5),
        ("auth.mean", 2.0),
        ("auth.count", 200),
        ("drop_rate", 0.02),
        ("drops", 4),
        ("drops_per_session_hour", 0.5),
        ("session_hours", 8.0),
        ("close.4008.count", 3),
        ("close.4008.during_auth.count", 2),
        ("close.1011.count", 0),
        ("close.1006.rate", 4 / 200),
        ("outcome.auth_refused.rate", 4 / 200),
        ("outcome.closed_normally.count", 180),
        ("outcome.timed_out.count", 0),
        ("reconnect.p95", 2500.0),
        ("reconnect.count", 9),
        ("reconnect.attempts", 10),
        ("reconnect.successes", 9),
        ("reconnect.success_rate", 0.9),
        ("survival.1m", 0.95),
        ("survival.5m", 0.99),
        ("survival.1h", 0.9),
        ("survival.90s", 150 / 160),
        ("drift.auth.p95", 1.5),
        ("drift.auth.p99", 1.0),
        ("sessions.started", 200),
        ("sessions.authenticated", 196),
        ("sessions.open", 0),
        ("keepalive.missed_pongs", 0),
        ("keepalive.timeouts", 1),
    ],
)
def test_every_family_reads_its_value_and_passes_and_fails(metric: str, value: float) -> None:
    assert value_of(f"{metric} < 1e9") == pytest.approx(value)
    assert passed(f"{metric} <= {value!r}")
    assert passed(f"{metric} >= {value!r}")
    assert not passed(f"{metric} < {value!r}")
    assert not passed(f"{metric} > {value!r}")
    assert passed(f"{metric} == {value!r}") == (value == float(repr(value)))
    assert not passed(f"{metric} != {value!r}")


@pytest.mark.parametrize(
    "expr, ok",
    [
        ("auth.p95 < 300", True),
        ("auth.p95 < 3", False),
        ("drop_rate < 0.01", False),
        ("drop_rate < 0.05", True),
        ("drops_per_session_hour < 0.5", False),
        ("drops_per_session_hour <= 0.5", True),
        ("close.1011.count == 0", True),
        ("close.1006.count == 0", False),
        ("close.4008.rate < 0.01", False),
        ("close.4008.rate < 0.02", True),
        ("outcome.auth_refused.rate < 0.001", False),
        ("outcome.closed_normally.count >= 10", True),
        ("reconnect.p95 < 5000", True),
        ("reconnect.p95 < 2000", False),
        ("reconnect.success_rate > 0.9", False),
        ("reconnect.success_rate >= 0.9", True),
        ("survival.5m > 0.98", True),
        ("survival.60m > 0.99", False),
        ("drift.auth.p95 < 1.2", False),
        ("drift.auth.p50 < 1.2", True),
        ("sessions.started > 100", True),
        ("sessions.started > 1000", False),
        ("keepalive.missed_pongs == 0", True),
        ("keepalive.timeouts == 0", False),
    ],
)
def test_examples_from_the_docs(expr: str, ok: bool) -> None:
    assert passed(expr) is ok


def test_rows_have_the_schema_shape() -> None:
    rows = evaluate(["auth.p95 < 300", parse("drops == 0")], REPORT)
    assert rows == [
        {"expr": "auth.p95 < 300", "metric": "auth.p95", "op": "<", "limit": 300.0, "value": 4.0, "passed": True,
         "status": "pass"},
        {"expr": "drops == 0", "metric": "drops", "op": "==", "limit": 0.0, "value": 4, "passed": False,
         "status": "fail"},
    ]


def test_evaluate_parses_strings_and_raises_on_bad_ones() -> None:
    with pytest.raises(ThresholdError):
        evaluate(["auth.p96 < 3"], REPORT)


# ---------------------------------------------------------------- not measured


def without(path: str) -> dict[str, Any]:
    report = copy.deepcopy(REPORT)
    *parents, last = path.split(".")
    node = report
    for key in parents:
        node = node[key]
    del node[last]
    return report


@pytest.mark.parametrize(
    "expr, report",
    [
        ("auth.p95 < 300", without("latency_ms.auth")),
        ("auth.p95 < 300", without("latency_ms")),
        ("auth.p95 < 300", {**REPORT, "latency_ms": {"auth": {"count": 0, "p95": None}}}),
        ("auth.p95 > 0", {**REPORT, "latency_ms": {"auth": {"count": 0, "p95": float("nan")}}}),
        ("auth.p95 < 300", {**REPORT, "latency_ms": None}),
        ("auth.p95 < 300", {**REPORT, "latency_ms": {"auth": {"p95": "fast"}}}),
        ("auth.p95 < 300", {**REPORT, "latency_ms": {"auth": {"p95": True}}}),
        ("drop_rate < 0.01", {**REPORT, "drop_rate": None}),
        ("drops_per_session_hour < 1", without("drops_per_session_hour")),
        ("close.1011.count == 0", without("close_codes")),
        ("close.4008.rate < 1", {**REPORT, "sessions": {**REPORT["sessions"], "started": 0}}),
        ("outcome.auth_refused.count == 0", without("sessions.outcomes")),
        ("outcome.auth_refused.rate < 1", without("sessions.started")),
        ("outcome.auth_refused.rate < 1", {**REPORT, "sessions": {**REPORT["sessions"], "outcomes": {"auth_refused": None}}}),
        ("reconnect.p95 < 5000", without("reconnect")),
        ("reconnect.success_rate > 0.9", without("reconnect.successes")),
        ("survival.30m > 0.99", REPORT),
        ("survival.5m > 0.5", without("survival")),
        ("survival.5m > 0.5", {**REPORT, "survival": {"5m": {"reached": 0, "eligible": 0, "rate": None}}}),
        ("drift.auth.p95 < 1.2", without("drift")),
        ("drift.ping.p95 < 1.2", REPORT),
        ("drift.auth.p95 < 1.2", {**REPORT, "drift": {"first": {"auth": {"p95": 0.0}}, "last": {"auth": {"p95": 1.0}}}}),
        ("sessions.started > 100", without("sessions")),
        ("keepalive.missed_pongs == 0", without("keepalive")),
        ("keepalive.missed_pongs == 0", {}),
    ],
)
def test_a_metric_not_measured_is_neither_a_pass_nor_a_breach(expr: str, report: dict[str, Any]) -> None:
    (row,) = evaluate([expr], report)
    assert row["value"] is None
    assert row["passed"] is None and row["status"] == "not_measured"
    assert row["note"].startswith("not measured")


@pytest.mark.parametrize("expr", ["reconnect.success_rate > 0.9", "reconnect.p95 < 5000", "reconnect.max < 1"])
def test_reconnect_gates_hold_vacuously_when_nothing_needed_a_reconnect(expr: str) -> None:
    report = {**REPORT, "reconnect": {"attempts": 0, "successes": 0, "recover_ms": {"count": 0, "p95": None}}}
    (row,) = evaluate([expr], report)
    assert row["value"] is None and row["passed"] is True and row["status"] == "vacuous"
    assert "no reconnect attempt" in row["note"]


def test_reconnects_that_never_recovered_are_not_vacuous() -> None:
    report = {**REPORT, "reconnect": {"attempts": 3, "successes": 0, "recover_ms": {"count": 0, "p95": None}}}
    rate, p95 = evaluate(["reconnect.success_rate > 0.9", "reconnect.p95 < 5000"], report)
    assert rate["status"] == "fail" and rate["value"] == 0
    assert p95["status"] == "not_measured"


KM = {"5m": {"estimate": 0.97, "lower": 0.93, "upper": 0.99, "at_risk": 40, "events": 3},
      "30m": {"estimate": None, "lower": None, "upper": None, "at_risk": 0, "events": 0}}


@pytest.mark.parametrize("expr, value, status", [
    ("survival.5m > 0.95", 0.97, "pass"),
    ("survival.5m.lower > 0.95", 0.93, "fail"),
    ("survival.5m.upper > 0.95", 0.99, "pass"),
    ("survival.5m.at_risk >= 50", 40, "fail"),
    ("survival.30m > 0.5", None, "not_measured"),
    ("survival.30m.lower > 0.5", None, "not_measured"),
    ("survival.30m.at_risk >= 0", 0, "pass"),
])
def test_survival_reads_the_kaplan_meier_estimate_its_bounds_and_who_was_at_risk(expr: str, value: Any,
                                                                                  status: str) -> None:
    (row,) = evaluate([expr], {**REPORT, "survival": KM})
    assert row["value"] == value and row["status"] == status, row


@pytest.mark.parametrize("expr, report, value", [
    ("bad_frames.count == 0", {"bad_frames": {"count": 3, "by_kind": {"not_json": 2, "unknown_type": 1}}}, 3),
    ("bad_frames.not_json.count == 0", {"bad_frames": {"count": 3, "by_kind": {"not_json": 2}}}, 2),
    ("bad_frames.too_big.count == 0", {"bad_frames": {"count": 3, "by_kind": {"not_json": 2}}}, 0),
    ("bad_frames.count == 0", {"bad_frames": {"not_json": 2, "unknown_type": 1}}, 3),  # older reports
    ("messages.unanswered == 0", {"messages": {"sent": 9, "answered": 8, "unanswered": 1}}, 1),
    ("harness.lag.p99 < 50", {"harness": {"lag_ms": {"count": 10, "p99": 12.5}}}, 12.5),
    ("harness.wait.p95 < 50", {"harness": {"wait_ms": {"count": 10, "p95": 2.0}}}, 2.0),
    ("errors.4029.count < 1", {"errors": {"4029": 12}}, 12),
    ("errors.4008.count < 1", {"errors": {"4029": 12}}, 0),
    ("saturation.share_saturated < 0.2", {"saturation": {"share_saturated": 0.1}}, 0.1),
])
def test_metrics_other_sections_carry_are_read_from_the_catalogues_paths(expr: str, report: dict[str, Any],
                                                                         value: float) -> None:
    assert value_of(expr, report) == value


@pytest.mark.parametrize("expr", ["messages.sent > 0", "harness.lag.p99 < 50", "bad_frames.count == 0"])
def test_a_section_a_run_did_not_write_is_not_measured(expr: str) -> None:
    (row,) = evaluate([expr], REPORT)
    assert row["status"] == "not_measured"


def test_not_measured_note_says_what_is_missing() -> None:
    (row,) = evaluate(["auth.p95 < 300"], without("latency_ms"))
    assert row["note"] == "not measured (latency_ms.auth.p95 is missing or null)"


def test_an_unseen_unknown_outcome_counts_zero_with_a_spelling_note() -> None:
    (row,) = evaluate(["outcome.auth_refsued.count == 0"], REPORT)
    assert row["value"] == 0 and row["passed"] is True
    assert "check its spelling" in row["note"]


def test_an_unseen_known_outcome_counts_zero_without_a_note() -> None:
    report = copy.deepcopy(REPORT)
    del report["sessions"]["outcomes"]["auth_refused"]
    (row,) = evaluate(["outcome.auth_refused.rate < 0.001"], report)
    assert row == {
        "expr": "outcome.auth_refused.rate < 0.001",
        "metric": "outcome.auth_refused.rate",
        "op": "<",
        "limit": 0.001,
        "value": 0.0,
        "passed": True,
        "status": "pass",
    }


def test_close_rows_with_odd_shapes_are_skipped() -> None:
    report = {**REPORT, "close_codes": ["x", {"code": "1011", "count": 2}, {"code": None, "count": 5}, {"code": 1011}]}
    assert value_of("close.1011.count < 1e9", report) == 2


# ---------------------------------------------------------------- live evaluation


def live(**changes: Any) -> dict[str, Any]:
    report = copy.deepcopy(REPORT)
    report.update(changes)
    return report


def test_partial_leaves_unmeasured_metrics_undecided() -> None:
    (row,) = evaluate_partial(["auth.p95 < 300"], live(latency_ms={"auth": {"count": 0, "p95": None}}))
    assert row["passed"] is None and row["settled"] is False and row["value"] is None
    assert row["note"].startswith("not measured")


def test_partial_settles_a_breach_of_a_count_that_only_grows() -> None:
    report = live(close_codes=[{"phase": "established", "code": 1011, "reason": "", "initiator": "server", "count": 1}])
    rows = evaluate_partial(["close.1011.count == 0", "close.1011.rate < 0.5", "drops < 100"], report)
    assert [(r["passed"], r["settled"]) for r in rows] == [(False, True), (True, False), (True, False)]


def test_partial_does_not_settle_rates_or_percentiles() -> None:
    rows = evaluate_partial(["drop_rate < 0.01", "auth.p95 < 1", "survival.1m > 0.99"], REPORT)
    assert [(r["passed"], r["settled"]) for r in rows] == [(False, False)] * 3


@pytest.mark.parametrize(
    "expr, settled",
    [
        # drops == 4, only grows
        ("drops < 4", True),
        ("drops < 5", False),
        ("drops <= 3", True),
        ("drops <= 4", False),
        ("drops > 3", True),
        ("drops > 4", False),
        ("drops >= 4", True),
        ("drops >= 5", False),
        ("drops == 3", True),
        ("drops == 4", False),
        ("drops != 3", True),
        ("drops != 4", False),
        # auth.max == 12 only grows; auth.min == 0.5 only shrinks
        ("auth.max < 10", True),
        ("auth.max < 20", False),
        ("auth.min > 1", True),
        ("auth.min >= 0.5", False),
        ("auth.min < 1", True),
        ("auth.min <= 0.5", True),
        ("auth.min <= 0.4", False),
        ("auth.min == 1", True),
        ("auth.min != 1", True),
        ("auth.min == 0.5", False),
        ("sessions.open < 1", False),
    ],
)
def test_partial_settles_only_what_cannot_change(expr: str, settled: bool) -> None:
    (row,) = evaluate_partial([expr], REPORT)
    assert row["settled"] is settled


def test_partial_rows_match_final_rows_when_everything_is_measured() -> None:
    exprs = ["auth.p95 < 300", "drops == 0", "survival.5m > 0.9"]
    final = evaluate(exprs, REPORT)
    partial = evaluate_partial(exprs, REPORT)
    assert [{k: v for k, v in r.items() if k != "settled"} for r in partial] == final


def test_evaluation_does_not_modify_the_report() -> None:
    report = make_report()
    before = copy.deepcopy(report)
    thresholds = [parse("auth.p95 < 3"), parse("close.4008.rate < 0.1"), parse("survival.1h > 0.5")]
    evaluate(thresholds, report)
    evaluate_partial(thresholds, report)
    assert report == before
    assert all(isinstance(t, Threshold) for t in thresholds)


def test_the_report_readers_load_no_sockets_locust_or_gevent() -> None:
    code = (
        "import sys\n"
        "import loadkit.report.thresholds, loadkit.report.compare, loadkit.report.html, loadkit.report.exitcodes\n"
        "print(sorted(m for m in ('socket', 'ssl', 'asyncio', 'gevent', 'locust', 'websockets') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_drift_on_a_run_of_a_few_windows_is_not_measured() -> None:
    short = {**REPORT, "drift": {**REPORT["drift"], "windows": 3}}
    (row,) = evaluate(["drift.auth.p95 < 1.2"], short)
    assert row["status"] == "not_measured" and "at least 6 series windows" in row["note"]
    (row,) = evaluate(["drift.auth.p95 < 1.2"], {**REPORT, "drift": {**REPORT["drift"], "windows": 60}})
    assert row["status"] == "fail"
