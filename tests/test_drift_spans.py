"""Drift spans: the run's first and last series windows, merged by phase (loadkit.metrics.drift)."""

from __future__ import annotations

import random

import pytest

from loadkit.metrics.drift import SPAN, Drift
from loadkit.metrics.histogram import Histogram
from loadkit.report.thresholds import evaluate


def window(values_us: list[int]) -> Histogram:
    h = Histogram()
    for v in values_us:
        h.record(v)
    return h


def merged_p95(hists: list[Histogram]) -> float:
    m = Histogram()
    for h in hists:
        m.merge(h)
    return m.summary_ms((95,))["p95"]  # type: ignore[return-value]


def test_a_long_run_compares_its_first_five_windows_merged_with_its_last_five() -> None:
    rng = random.Random(7)
    windows = [window([rng.randint(1_000, 9_000) * (1 + i // 20) for _ in range(200)]) for i in range(40)]
    drift = Drift()
    for w in windows:
        drift.add_window({"message": w})
    spans = drift.spans()
    assert spans["span_windows"] == SPAN
    assert spans["first"]["message"]["p95"] == merged_p95(windows[:SPAN])
    assert spans["last"]["message"]["p95"] == merged_p95(windows[-SPAN:])
    assert spans["last"]["message"]["p95"] > 1.8 * spans["first"]["message"]["p95"]  # the run doubled


def test_one_slow_window_at_the_end_does_not_decide_the_drift() -> None:
    """A soak's last minute with a hiccup: one window of a five-window side, not the whole comparison."""
    drift = Drift()
    for _ in range(39):
        drift.add_window({"message": window([2_000] * 90 + [5_000] * 10)})  # p95 5 ms
    drift.add_window({"message": window([2_000] * 80 + [9_000] * 20)})  # the last window alone: p95 9 ms
    spans = drift.spans()
    assert spans["first"]["message"]["p95"] == 5.0
    ratio = spans["last"]["message"]["p95"] / spans["first"]["message"]["p95"]
    assert ratio < 1.5 < 9_000 / 5_000  # one window against one would have breached drift.message.p95 < 1.5


@pytest.mark.parametrize("windows", [6, 7, 9, 12, 15])
def test_a_short_run_uses_at_most_a_third_of_its_windows_a_side(windows: int) -> None:
    hists = [window([1_000 * (i + 1)] * 10) for i in range(windows)]
    drift = Drift()
    for h in hists:
        drift.add_window({"auth": h})
    spans = drift.spans()
    n = spans["span_windows"]
    assert n == min(SPAN, windows // 3)
    assert spans["first"]["auth"]["p95"] == merged_p95(hists[:n])
    assert spans["last"]["auth"]["p95"] == merged_p95(hists[windows - n:])


def test_a_phase_only_in_some_windows_is_taken_from_the_runs_first_and_last_windows() -> None:
    """auth in the spawn's two windows and in the last one: the spawn against the end, nothing between."""
    drift = Drift()
    drift.add_window({"auth": window([1_000] * 10), "message": window([500] * 10)})
    drift.add_window({"auth": window([2_000] * 10), "message": window([500] * 10)})
    for _ in range(20):
        drift.add_window({"message": window([500] * 10), "auth": window([3_000] * 10)} if _ == 5 else
                         {"message": window([500] * 10)})
    drift.add_window({"auth": window([8_000] * 10), "message": window([500] * 10)})
    spans = drift.spans()
    assert spans["first"]["auth"]["p95"] == 2.0  # windows 0 and 1 merged; window 7's auth is in neither side
    assert spans["last"]["auth"]["p95"] == 8.0


def test_a_phase_with_no_samples_at_the_end_has_no_drift_it_is_not_measured() -> None:
    """A 30-minute soak of 30-65 minute sessions: every auth in the spawn. Not its first minute against its second."""
    drift = Drift()
    drift.add_window({"auth": window([4_000] * 1200), "message": window([1_000] * 50)})
    drift.add_window({"auth": window([9_000] * 800), "message": window([1_000] * 50)})
    for _ in range(28):
        drift.add_window({"message": window([1_000] * 50)})
    spans = drift.spans()
    assert "auth" in spans["first"] and "auth" not in spans["last"]
    report = {"drift": {"window_s": 60, "windows": 30, **spans}}
    rows = {r["expr"]: r for r in evaluate(["drift.auth.p95 < 1.5", "drift.message.p95 < 1.5"], report)}
    assert rows["drift.auth.p95 < 1.5"]["status"] == "not_measured"
    assert rows["drift.message.p95 < 1.5"]["passed"] is True


def test_spans_keep_a_bounded_number_of_windows_and_answer_again_after_a_new_one() -> None:
    drift = Drift()
    for i in range(100):
        drift.add_window({"message": window([1_000 + i] * 3)})
    assert len(drift._head) == SPAN and len(drift._tail) == SPAN and drift.windows == 100
    before = drift.spans()
    assert drift.spans() is before  # cached until the next window
    drift.add_window({"message": window([50_000] * 3)})
    assert drift.spans()["last"]["message"]["p95"] > before["last"]["message"]["p95"]


def test_the_html_report_says_how_many_windows_each_side_merged() -> None:
    from loadkit.report.html.tables import drift_section

    drift = Drift()
    for i in range(30):
        drift.add_window({"message": window([1_000 + 10 * i] * 5)})
    section = drift_section({"drift": {"window_s": 60, "windows": 30, **drift.spans()}})
    assert "first and last 5 windows of 60 s" in section
    one = drift_section({"drift": {"window_s": 10, "first": {"auth": {"p95": 2.0}}, "last": {"auth": {"p95": 2.2}}}})
    assert "first and last window of 10 s" in one  # a report from before spans: one window each
