"""loadkit compare: metric by metric changes, limits, the command line and its exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loadkit.report.compare import (
    DEFAULT_LIMITS,
    Comparison,
    Limit,
    LimitError,
    compare as _compare,
    main,
    parse_limit,
    parse_limits,
)
from loadkit.report.compare_noise import harness_slowdown
from loadkit.report.exitcodes import ExitCode


def make_report() -> dict[str, Any]:
    latency = {"count": 500, "min": 0.4, "mean": 2.0, "p50": 1.0, "p95": 10.0, "p99": 20.0, "max": 40.0}
    return {
        "run": {"duration_s": 600.0},
        "sessions": {
            "started": 1000,
            "authenticated": 990,
            "open": 0,
            "outcomes": {"closed_normally": 950, "dropped_by_server": 10, "stopped_by_harness": 30, "auth_refused": 10},
        },
        "close_codes": [
            {"phase": "established", "code": 1000, "reason": "", "initiator": "client", "count": 950},
            {"phase": "established", "code": 1006, "reason": "", "initiator": "none", "count": 10},
        ],
        "drops": 10,
        "drop_rate": 0.010,
        "session_hours": 20.0,
        "drops_per_session_hour": 0.5,
        "latency_ms": {"token": dict(latency), "connect": dict(latency), "auth": dict(latency)},
        "reconnect": {"attempts": 10, "successes": 10, "recover_ms": {"count": 10, "p50": 500.0, "p95": 900.0}},
        "survival": {"1m": {"reached": 990, "eligible": 1000, "rate": 0.99}, "5m": {"reached": 95, "eligible": 100, "rate": 0.95}},
        "verdict": "pass",
    }


def compare(baseline: Any, candidate: Any, limits: Any = None, **kw: Any) -> Comparison:
    """The limit semantics alone (noise is tested below, with real histogram intervals)."""
    kw.setdefault("noise", False)
    return _compare(baseline, candidate, limits, **kw)


def by_metric(comparison: Comparison) -> dict[str, Any]:
    return {c.metric: c for c in comparison.changes}


# ---------------------------------------------------------------- compare()


def test_identical_reports_have_no_regression() -> None:
    report = make_report()
    comparison = compare(report, copy.deepcopy(report))
    assert comparison.regressions == []
    assert comparison.exit_code is ExitCode.PASS
    assert {c.status for c in comparison.changes} == {"same"}


def test_lists_every_metric_family_in_a_stable_order() -> None:
    report = make_report()
    names = [c.metric for c in compare(report, report).changes]
    assert names == [
        *(f"{phase}.{stat}" for phase in ("token", "connect", "auth") for stat in ("p50", "p95", "p99", "max")),
        "outcome.auth_refused.rate",
        "outcome.closed_normally.rate",
        "outcome.dropped_by_server.rate",
        "outcome.stopped_by_harness.rate",
        "close.1000.rate",
        "close.1006.rate",
        "drop_rate",
        "drops_per_session_hour",
        "reconnect.success_rate",
        "reconnect.p95",
        "survival.1m",
        "survival.5m",
        "sessions.started",
    ]


def test_a_latency_regression_beyond_twenty_percent_is_caught() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["auth"]["p95"] = 12.5  # +25 %
    candidate["latency_ms"]["auth"]["p99"] = 23.0  # +15 %: within the default
    change = by_metric(compare(baseline, candidate))
    auth95 = change["auth.p95"]
    assert (auth95.baseline, auth95.candidate) == (10.0, 12.5)
    assert auth95.absolute == pytest.approx(2.5)
    assert auth95.relative == pytest.approx(0.25)
    assert auth95.direction == "higher_is_worse"
    assert auth95.limit == Limit(0.20, True)
    assert auth95.regression and auth95.status == "regression"
    assert not change["auth.p99"].regression and change["auth.p99"].status == "worse"


def test_a_change_exactly_at_the_limit_is_not_a_regression() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["auth"]["p95"] = 12.0  # +20 % exactly
    candidate["drop_rate"] = 0.015  # +0.005 exactly (not exact in binary floating point)
    assert compare(baseline, candidate).regressions == []


def test_improvements_are_never_regressions() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["auth"]["p95"] = 2.0
    candidate["drop_rate"] = 0.0
    candidate["survival"]["5m"]["rate"] = 1.0
    comparison = compare(baseline, candidate)
    assert comparison.regressions == []
    change = by_metric(comparison)
    assert change["auth.p95"].status == change["drop_rate"].status == change["survival.5m"].status == "better"


def test_drop_and_survival_defaults_are_absolute() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["drop_rate"] = 0.016  # +0.006 > 0.005
    candidate["drops_per_session_hour"] = 0.9  # +0.4 <= 0.5
    candidate["survival"]["1m"]["rate"] = 0.975  # -0.015 < -0.01
    candidate["survival"]["5m"]["rate"] = 0.945  # -0.005
    change = by_metric(compare(baseline, candidate))
    assert change["drop_rate"].regression
    assert not change["drops_per_session_hour"].regression
    assert change["survival.1m"].regression and change["survival.1m"].direction == "lower_is_worse"
    assert not change["survival.5m"].regression


def test_user_limits_override_defaults_exact_names_beat_patterns() -> None:
    baseline, candidate = make_report(), make_report()
    for phase in ("token", "connect", "auth"):
        candidate["latency_ms"][phase]["p99"] = 25.0  # +25 %
    limits = {"auth.p99": "10%", "*.p99": "30%", "token.p99": None}
    change = by_metric(compare(baseline, candidate, limits))
    assert change["auth.p99"].regression  # exact 10 % beats the pattern
    assert not change["connect.p99"].regression  # 30 % from the pattern beats the default 20 %
    assert change["token.p99"].limit is None and not change["token.p99"].regression  # off


def test_limits_accept_floats_as_absolute_and_limit_objects() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["auth"]["p50"] = 1.6
    assert by_metric(compare(baseline, candidate, {"auth.p50": 0.5}))["auth.p50"].regression
    assert not by_metric(compare(baseline, candidate, {"auth.p50": Limit(1.0, True)}))["auth.p50"].regression


def test_defaults_can_be_left_out() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["auth"]["p95"] = 100.0
    assert compare(baseline, candidate, defaults=False).regressions == []
    assert [c.metric for c in compare(baseline, candidate).regressions] == ["auth.p95"]


def test_a_metric_the_candidate_did_not_measure_is_shown_missing_not_a_regression() -> None:
    """A survival mark nobody reached, a phase with no sample: nothing to compare (thresholds gate those)."""
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["auth"] = {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    candidate["survival"]["5m"] = {"estimate": None, "at_risk": 0}
    change = by_metric(compare(baseline, candidate))
    assert change["auth.p95"].status == "missing" and not change["auth.p95"].regression
    assert change["survival.5m"].status == "missing" and not change["survival.5m"].regression


def test_a_metric_new_in_the_candidate_is_not_a_regression() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["message"] = {"count": 5, "p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0}
    change = by_metric(compare(baseline, candidate))
    assert change["message.p95"].status == "new" and not change["message.p95"].regression


def test_a_close_code_only_in_the_candidate_compares_against_zero() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["close_codes"].append({"phase": "established", "code": 1011, "reason": "", "initiator": "server", "count": 20})
    change = by_metric(compare(baseline, candidate, {"close.*.rate": "0.01"}))["close.1011.rate"]
    assert (change.baseline, change.candidate, change.relative) == (0, 0.02, None)
    assert change.regression


def test_relative_limit_on_a_zero_baseline_fails_any_worsening() -> None:
    baseline, candidate = make_report(), make_report()
    baseline["sessions"]["outcomes"]["dropped_by_server"] = 0
    assert by_metric(compare(baseline, candidate, {"outcome.dropped_by_server.rate": "50%"}))[
        "outcome.dropped_by_server.rate"
    ].regression


def test_directions() -> None:
    change = by_metric(compare(make_report(), make_report()))
    assert change["outcome.closed_normally.rate"].direction == "lower_is_worse"
    assert change["outcome.auth_refused.rate"].direction == "higher_is_worse"
    assert change["outcome.stopped_by_harness.rate"].direction == "neutral"
    assert change["close.1000.rate"].direction == "neutral"
    assert change["close.1006.rate"].direction == "higher_is_worse"
    assert change["reconnect.success_rate"].direction == "lower_is_worse"
    assert change["sessions.started"].direction == "neutral"


def test_a_neutral_metric_with_a_limit_regresses_either_way() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["sessions"]["started"] = 500
    assert by_metric(compare(baseline, candidate, {"sessions.started": "10%"}))["sessions.started"].regression


def test_survival_marks_match_across_spellings() -> None:
    baseline, candidate = make_report(), make_report()
    baseline["survival"]["1h"] = {"rate": 0.9}
    candidate["survival"]["60m"] = {"rate": 0.8}
    change = by_metric(compare(baseline, candidate, {"survival.1h": "0.05"}))["survival.60m"]
    assert (change.baseline, change.candidate, change.regression) == (0.9, 0.8, True)


def test_default_limits() -> None:
    assert DEFAULT_LIMITS["auth.p95"] == Limit(0.2, True)
    assert DEFAULT_LIMITS["token.p99"] == Limit(0.2, True)
    assert DEFAULT_LIMITS["drop_rate"] == Limit(0.005, False)
    assert DEFAULT_LIMITS["drops_per_session_hour"] == Limit(0.5, False)
    assert DEFAULT_LIMITS["survival.*"] == Limit(0.01, False)


def test_compare_tolerates_sparse_and_odd_reports() -> None:
    odd = {"close_codes": [{"code": "x"}, "y"], "survival": {"soon": {}}, "sessions": {"outcomes": None}}
    assert compare({}, {}).changes == ()
    assert compare(odd, {}).regressions == []


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize(
    "text, expected",
    [
        ("auth.p95=20%", ("auth.p95", Limit(0.2, True))),
        ("drop_rate=0.005", ("drop_rate", Limit(0.005, False))),
        ("*.p99=30%", ("*.p99", Limit(0.3, True))),
        ("survival.*=-0.01", ("survival.*", Limit(0.01, False))),
        ("survival.1h=0.02", ("survival.60m", Limit(0.02, False))),
        (" Auth.P95 = 5 % ", ("auth.p95", Limit(0.05, True))),
        ("auth.p95=off", ("auth.p95", None)),
    ],
)
def test_parse_limit(text: str, expected: tuple[str, Limit | None]) -> None:
    pattern, limit = parse_limit(text)
    assert pattern == expected[0]
    if expected[1] is None:
        assert limit is None
    else:
        assert limit is not None
        assert limit.relative == expected[1].relative
        assert limit.value == pytest.approx(expected[1].value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("auth.p95", 'limit "auth.p95": expected METRIC=VALUE (e.g. auth.p95=20% or drop_rate=0.005)'),
        ("=20%", 'limit "=20%": missing metric before "=" (e.g. auth.p95=20%)'),
        ("auth.p95=", 'limit "auth.p95=": missing value after "=" (e.g. auth.p95=20% or auth.p95=0.005)'),
        ("auth.p95=fast", 'limit "auth.p95=fast": value "fast" is not a number or a percentage (e.g. auth.p95=20% for relative, auth.p95=0.005 for absolute, auth.p95=off)'),
        ("auth.p95=inf%", 'limit "auth.p95=inf%": value "inf%" is not a number or a percentage (e.g. auth.p95=20% for relative, auth.p95=0.005 for absolute, auth.p95=off)'),
        ("auth.p96=20%", 'limit "auth.p96=20%": unknown statistic "p96" (expected one of p50, p90, p95, p99, max, min, mean, count)'),
    ],
)
def test_bad_limits_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(LimitError) as excinfo:
        parse_limit(text)
    assert str(excinfo.value) == message


def test_later_limits_override_earlier_ones() -> None:
    assert parse_limits(["auth.p95=10%", "auth.p95=off"]) == {"auth.p95": None}


def test_table_and_json_shapes() -> None:
    baseline, candidate = make_report(), make_report()
    candidate["latency_ms"]["auth"]["p95"] = 15.0
    comparison = compare(baseline, candidate)
    lines = comparison.format_table().splitlines()
    assert lines[0].split() == ["metric", "baseline", "candidate", "change", "limit", "status"]
    auth = next(line for line in lines if line.startswith("auth.p95 "))
    assert auth.split() == ["auth.p95", "10.00", "15.00", "+5.00", "(+50.0%)", "+20%", "REGRESSION"]
    assert len({len(line) for line in lines if line.endswith("same")}) == 1  # aligned columns
    data = comparison.to_dict()
    assert data["regressions"] == ["auth.p95"] and data["exit_code"] == 3
    row = next(m for m in data["metrics"] if m["metric"] == "auth.p95")
    assert row == {
        "metric": "auth.p95",
        "baseline": 10.0,
        "candidate": 15.0,
        "absolute_change": 5.0,
        "relative_change": 0.5,
        "direction": "higher_is_worse",
        "limit": "20%",
        "regression": True,
        "status": "regression",
    }
    assert comparison.summary() == "1 regression beyond limits: auth.p95"


# ---------------------------------------------------------------- command line


def write(path: Path, data: Any) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    baseline = make_report()
    worse = make_report()
    worse["latency_ms"]["auth"]["p99"] = 30.0
    return {
        "baseline": write(tmp_path / "baseline.json", baseline),
        "same": write(tmp_path / "same.json", baseline),
        "worse": write(tmp_path / "worse.json", worse),
        "broken": write(tmp_path / "broken.json", '{"sessions": '),
        "list": write(tmp_path / "list.json", "[1, 2]"),
        "dir": str(tmp_path),
        "missing": str(tmp_path / "nope.json"),
        "out": str(tmp_path / "comparison.json"),
    }


def test_main_exits_0_without_regression(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([files["baseline"], files["same"]]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["metric", "baseline", "candidate", "change", "limit", "status"]
    assert out.rstrip().endswith("metrics compared)")


def test_main_exits_3_on_a_regression_and_writes_json(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([files["baseline"], files["worse"], "--json", files["out"]]) == 3
    out = capsys.readouterr().out
    assert "REGRESSION" in out and out.rstrip().endswith("1 regression beyond limits: auth.p99")
    assert json.loads(Path(files["out"]).read_text())["regressions"] == ["auth.p99"]


def test_main_limits_change_the_outcome(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([files["baseline"], files["worse"], "--limit", "*.p99=60%"]) == 0
    assert main([files["baseline"], files["worse"], "--limit", "auth.p99=off"]) == 0
    assert main([files["baseline"], files["same"], "--no-default-limits", "--limit", "auth.p50=-1%"]) == 0


def test_main_notes_a_run_whose_verdict_makes_it_incomparable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    invalid = make_report()
    invalid["verdict"] = "invalid"
    assert main([write(tmp_path / "a.json", make_report()), write(tmp_path / "b.json", invalid)]) == 0
    assert "note: the candidate run's verdict is 'invalid'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "{baseline}"], "cannot read baseline {missing}: No such file or directory"),
        (["{baseline}", "{dir}"], "cannot read candidate {dir}: Is a directory"),
        (["{baseline}", "{broken}"], "candidate {broken} is not valid JSON: Expecting value at line 1 column 14"),
        (["{list}", "{baseline}"], "baseline {list} is not a loadkit report (expected a JSON object)"),
        (["{baseline}", "{same}", "--limit", "auth.p95=fast"], 'limit "auth.p95=fast": value "fast" is not a number or a percentage (e.g. auth.p95=20% for relative, auth.p95=0.005 for absolute, auth.p95=off)'),
        (["{baseline}", "{same}", "--limit", "auth.p96=5%"], 'limit "auth.p96=5%": unknown statistic "p96" (expected one of p50, p90, p95, p99, max, min, mean, count)'),
        (["{baseline}"], "the following arguments are required: CANDIDATE.json"),
        (["{baseline}", "{same}", "--bogus"], "unrecognized arguments: --bogus"),
        (["{baseline}", "{same}", "--json", "{dir}/no/such/dir/out.json"], "cannot write {dir}/no/such/dir/out.json: No such file or directory"),
    ],
)
def test_main_exits_2_with_one_line_on_bad_input(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main([a.format(**files) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"loadkit compare: error: {message.format(**files)}\n"


def test_main_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "METRIC=VALUE" in capsys.readouterr().out


# ---------------------------------------------------------------- noise (real histograms)


def run_report(shift_us: int = 0, seed: int = 1, n: int = 2000, scale: float = 1.0) -> dict[str, Any]:
    """A report built the harness's way from samples: a lognormal auth latency around 20 ms, times a scale,
    plus a shift."""
    import random

    from loadkit.lifecycle import Outcome, Phase, Result
    from loadkit.metrics.recorder import Recorder
    from loadkit.report.build import build_report

    rng = random.Random(seed)
    rec = Recorder(marks=(60,))
    for _ in range(n):
        rec.session_started()
        rec.session_authenticated()
        rec.observe("auth", int(rng.lognormvariate(9.9, 0.5) * scale) + shift_us)
        rec.observe("connect", int(rng.lognormvariate(7.0, 0.3) * scale))
        rec.session_ended(Result(Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED, True), 30.0, (1000, "", "client"))
    return build_report(rec, open_sessions=0, run={})


def test_two_runs_of_the_same_target_compare_clean() -> None:
    for seed in range(2, 7):
        comparison = _compare(run_report(seed=1), run_report(seed=seed))
        assert comparison.regressions == [], comparison.format_table()


def test_auth_slower_by_50_ms_is_flagged_on_auth_p50_and_p95() -> None:
    comparison = _compare(run_report(seed=1), run_report(shift_us=50_000, seed=2))
    assert {"auth.p50", "auth.p95"} <= {c.metric for c in comparison.regressions}, comparison.format_table()
    assert not any(c.metric.startswith("connect.") for c in comparison.regressions)


def test_a_small_absolute_change_in_a_small_latency_is_below_the_floor() -> None:
    base, cand = make_report(), make_report()
    cand["latency_ms"]["auth"]["p99"] = 21.5  # +7.5 %: 1.5 ms
    change = by_metric(_compare(base, cand, {"auth.p99": "5%"}))["auth.p99"]
    assert not change.regression and change.status == "below floor"


def test_too_few_samples_are_shown_not_counted() -> None:
    base, cand = run_report(seed=1, n=200), run_report(shift_us=80_000, seed=2, n=200)
    change = by_metric(_compare(base, cand))["auth.p99"]  # 200 * 1 % = 2 samples beyond p99
    assert change.status == "too few samples" and not change.regression
    assert by_metric(_compare(base, cand))["auth.p95"].regression  # 10 beyond p95: enough


def with_lag(report: dict[str, Any], p50_ms: float, count: int = 600) -> dict[str, Any]:
    """The report with its harness's timer lag (``harness.lag_ms``) set."""
    report["harness"] = {"lag_ms": {"count": count, "p50": p50_ms, "p95": 5 * p50_ms, "p99": 8 * p50_ms}}
    return report


def test_a_candidate_whose_harness_was_twice_as_late_is_judged_against_a_baseline_twice_as_slow() -> None:
    """Two runs of one target on a shared machine: everything took twice as long, and so did the harness's wake-ups."""
    base, cand = with_lag(run_report(seed=1), 0.85), with_lag(run_report(seed=2, scale=2.0), 1.75)
    assert harness_slowdown(base, cand) == pytest.approx(1.75 / 0.85)
    comparison = _compare(base, cand)
    assert comparison.regressions == [], comparison.format_table()
    assert by_metric(comparison)["auth.p50"].status == "harness lag"
    # without the lag the same figures are regressions: the harness's own account is what explains them
    assert {"auth.p50", "auth.p95"} <= {c.metric for c in _compare(run_report(seed=1), run_report(seed=2, scale=2.0)).regressions}


def test_a_regression_beyond_what_a_busier_harness_explains_is_still_one() -> None:
    base, cand = with_lag(run_report(seed=1), 0.85), with_lag(run_report(shift_us=50_000, seed=2), 1.4)
    regressions = {c.metric for c in _compare(base, cand).regressions}
    assert {"auth.p50", "auth.p95"} <= regressions


@pytest.mark.parametrize(("base_lag", "cand_lag", "count", "slowdown"), [
    (0.85, 0.86, 600, 1.0),   # grew by less than 0.1 ms: the lag's own noise
    (0.85, 1.75, 10, 1.0),    # too few wake-ups to say
    (1.75, 0.85, 600, 1.0),   # the candidate's harness was less busy: nothing to explain
    (0.5, 2.0, 600, 4.0),
])
def test_the_harness_slowdown_is_the_ratio_of_lags_when_it_clearly_grew(
        base_lag: float, cand_lag: float, count: int, slowdown: float) -> None:
    base, cand = with_lag(make_report(), base_lag, count), with_lag(make_report(), cand_lag, count)
    assert harness_slowdown(base, cand) == pytest.approx(slowdown)
    assert harness_slowdown(make_report(), cand) == 1.0  # a report without the harness's account


def test_the_harness_slowdown_is_the_larger_of_the_median_and_p95_ratios() -> None:
    base, cand = with_lag(make_report(), 0.8), with_lag(make_report(), 0.8)
    cand["harness"]["lag_ms"]["p95"] = 3 * base["harness"]["lag_ms"]["p95"]  # bursts: the tail tripled
    assert harness_slowdown(base, cand) == pytest.approx(3.0)


def test_a_file_that_is_not_a_loadkit_report_is_bad_input(tmp_path: Any, capsys: Any) -> None:
    import json

    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "run.json").write_text(json.dumps(run_report()))
    assert main([str(tmp_path / "empty.json"), str(tmp_path / "run.json")]) == 2
    assert "is not a loadkit report" in capsys.readouterr().err


@pytest.mark.parametrize(("candidate", "code"), [("same", 0), ("worse", 3)])
def test_a_reader_that_leaves_early_changes_neither_the_exit_code_nor_prints_a_traceback(
        files: dict[str, str], candidate: str, code: int) -> None:
    """``loadkit compare A B | head``: the pipe closes before the table is written."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # nobody will read: every write to stdout fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "loadkit.cli", "compare", files["baseline"], files[candidate]],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
