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


def test_the_spawns_windows_are_no_first_side_its_load_would_hide_a_slowdown() -> None:
    """A 4-minute soak's windows as measured: the spawn read message p95 5.5 ms, the steady state 3.4.

    A later p95 of 5 ms (a 1.47x slowdown on the steady state) breaches a
    ``drift.message.p95 < 1.4`` gate when compared with the first steady
    windows; with the spawn's windows in the first side it read 5.0 / 5.5
    and passed.
    """
    drift = Drift()
    for _ in range(2):
        drift.add_window({"message": window([2_000] * 80 + [5_500] * 20)}, steady=False)
    for _ in range(20):
        drift.add_window({"message": window([2_000] * 90 + [3_400] * 10)})
    for _ in range(8):
        drift.add_window({"message": window([2_500] * 90 + [5_000] * 10)})
    spans = drift.spans()
    assert spans["steady_from_window"] == 2
    assert spans["first"]["message"]["p95"] == 3.4 and spans["first"]["message"]["from_window"] == 2
    assert spans["last"]["message"]["p95"] == 5.0 and spans["last"]["message"]["from_window"] == 25
    rows = {r["expr"]: r for r in evaluate(["drift.message.p95 < 1.4"], {"drift": {"windows": 30, **spans}})}
    assert rows["drift.message.p95 < 1.4"]["passed"] is False
    positions = merged_p95([window([2_000] * 80 + [5_500] * 20)] * 2 + [window([2_000] * 90 + [3_400] * 10)] * 3)
    assert positions == 5.5 and 5.0 / positions < 1.4  # the spawn's windows in the first side: the same slowdown passed


def test_a_phase_first_seen_after_the_spawn_is_compared_from_its_first_steady_windows() -> None:
    """auth in a soak of 30-65 minute sessions: in the spawn, then the re-auths from minute 30 on."""
    drift = Drift()
    for _ in range(2):
        drift.add_window({"auth": window([9_000] * 1000), "message": window([500] * 10)}, steady=False)
    for i in range(2, 60):
        drift.add_window({"message": window([500] * 10), **({"auth": window([1_000 + i] * 40)} if i >= 30 else {})})
    spans = drift.spans()
    first = spans["first"]["auth"]
    assert first["from_window"] == 30 and first["count"] == 5 * 40  # windows 30-34, not the spawn's 9 ms
    assert first["p95"] == merged_p95([window([1_000 + i] * 40) for i in range(30, 35)])
    assert spans["first"]["message"]["from_window"] == 2
    assert spans["last"]["auth"]["from_window"] == 55 and spans["last"]["auth"]["count"] == 5 * 40


def test_a_first_side_never_reaches_into_the_last_windows() -> None:
    """A phase seen only at the end has one side: not measured, not its last windows against themselves."""
    drift = Drift()
    for i in range(30):
        drift.add_window({"message": window([500] * 10), **({"reply": window([800] * 30)} if i >= 27 else {})})
    spans = drift.spans()
    assert "reply" not in spans["first"] and "reply" in spans["last"]
    rows = {r["expr"]: r for r in evaluate(["drift.reply.p95 < 1.5"], {"drift": {"windows": 30, **spans}})}
    assert rows["drift.reply.p95 < 1.5"]["status"] == "not_measured"
    assert "first" in rows["drift.reply.p95 < 1.5"]["note"]


def test_a_run_whose_spawn_never_completed_has_no_drift_and_says_why() -> None:
    drift = Drift()
    for _ in range(30):
        drift.add_window({"message": window([500] * 10)}, steady=False)
    spans = drift.spans()
    assert spans["steady_from_window"] is None and spans["first"] == {} and "message" in spans["last"]
    rows = {r["expr"]: r for r in evaluate(["drift.message.p95 < 1.5"], {"drift": {"windows": 30, **spans}})}
    assert rows["drift.message.p95 < 1.5"]["status"] == "not_measured"
    assert "spawn completed" in rows["drift.message.p95 < 1.5"]["note"]


@pytest.mark.parametrize(("stat", "need"), [("p50", 2), ("p90", 10), ("p95", 20), ("p99", 100), ("max", 1)])
def test_a_percentile_of_too_few_samples_is_no_drift(stat: str, need: int) -> None:
    """Below 100/(100-Q) samples a side's pQ is its maximum: one sample against one."""
    for count, measured in ((need - 1, False), (need, True)):
        drift = Drift()
        for i in range(30):
            drift.add_window({"auth": window([1_000] * count)} if i in (3, 29) else {"message": window([500])})
        if count == 0:
            continue
        rows = {r["expr"]: r for r in evaluate([f"drift.auth.{stat} < 1.5"], {"drift": {"windows": 30, **drift.spans()}})}
        row = rows[f"drift.auth.{stat} < 1.5"]
        assert (row["status"] != "not_measured") is measured, row
        if not measured:
            assert f"needs at least {need}" in row["note"]


def test_every_statistic_a_drift_gate_may_name_is_on_both_sides() -> None:
    from loadkit.report.catalogue import DRIFT_STATS

    drift = Drift()
    for i in range(30):
        drift.add_window({"message": window([1_000 + i] * 200)})
    spans = drift.spans()
    report = {"drift": {"windows": 30, **spans}}
    for stat in DRIFT_STATS:
        assert stat in spans["first"]["message"] and stat in spans["last"]["message"]
        (row,) = evaluate([f"drift.message.{stat} < 2"], report)
        assert row["passed"] is True, row


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
    assert len(drift._head["message"]) == SPAN and len(drift._tail) == SPAN and drift.windows == 100
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
    assert "first and last 5 windows of 60 s" in section and "after the spawn, window 0 on" in section
    one = drift_section({"drift": {"window_s": 10, "first": {"auth": {"p95": 2.0}}, "last": {"auth": {"p95": 2.2}}}})
    assert "first and last window of 10 s" in one  # a report from before spans: one window each


def test_a_processes_windows_are_steady_from_the_first_that_begins_once_the_spawn_has_settled() -> None:
    """``Figures``: the spawn's windows, the one it completes in, and a RESET after it (Locust's glue)."""
    from loadkit.locust.aggregation import Figures
    from loadkit.metrics.recorder import DEFAULT_SURVIVAL_MARKS, Recorder
    from loadkit.session import LiveSessions

    fig = Figures(DEFAULT_SURVIVAL_MARKS, Recorder(), LiveSessions(), is_master=False)
    fig.restart(DEFAULT_SURVIVAL_MARKS)

    def close(auth_us: int) -> None:
        fig.recorder.latency["auth"].record(auth_us)
        assert fig.close_window() is not None

    close(9_000)                 # window 0: the spawn
    fig.spawn_completed(0.0)     # it completes during window 1...
    close(8_000)                 # ...which began before: not steady
    assert fig.drift_spans.steady_from is None
    close(1_000)                 # window 2: began after it
    fig.spawn_completed(0.0)     # a later spawn (more users from the web UI) changes nothing
    close(1_000)
    assert fig.drift_spans.steady_from == 2
    fig.restart(DEFAULT_SURVIVAL_MARKS, carried=3, keep_steady=True)  # RESET: still steady
    close(1_000)
    assert fig.drift_spans.steady_from == 0
    fig.restart(DEFAULT_SURVIVAL_MARKS)                                 # a new test: its spawn is to come
    close(1_000)
    assert fig.drift_spans.steady_from is None
    fig.spawn_completed(3600.0)  # settles in an hour: nothing before that is steady
    close(1_000)
    assert fig.drift_spans.steady_from is None
