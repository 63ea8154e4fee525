"""Survival end to end: the harness's Kaplan-Meier estimate equals the gateway's own.

The gateway records every authenticated session's age at its end and whether
the guest lost it (``session_ages``, see loadkit/gateway/stats.py). The
Kaplan-Meier estimate computed here, by hand, from that record must equal
the harness's ``survival`` at each mark: the estimate, the number at risk,
the events and the censorings. Equal, not close.

Equal is only well defined where the two clocks cannot disagree about an
order. A session's age on the gateway (auth_ok sent → first close frame)
and on the harness (auth_ok read → close seen) differ by the two one-way
delays and the two histograms' bucket widths. So the run is laid out, by two
seeds, so that no session ends near a mark and no drop ends near a normal
end: 12 guests, one session each (the harness seed fixes each guest's
length, the gateway seed each session number's planned drop), and the seeds
were picked so that the layout holds, with ends at least 150 ms apart where
the order matters, whichever guest gets which session number (checked on
300 random assignments: the order of upgrades is the machine's). The test
checks from the gateway's record that it held on this run, with a tolerance
derived from what the run measured (twice the largest message round trip
plus both bucket widths); only then compares. A run it did not hold
for (one slow round trip widens the tolerance past a mark) is run again, up
to three times. The planned ends (seconds
after auth_ok; D = dropped, c = censored), for one assignment::

    0.77 D | 1.38-1.72 c ×4 | 2.15 D 2.16 D 2.61 D | 3.14-3.40 c ×4
      marks:  1s            2s                      3s               4s

so the censorings before 2.15 s make S(3s) differ from the share of
undropped sessions, and 4s has nobody at risk (not measured, on both sides).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import assert_matches_gateway, run_locust, settled_stats

pytestmark = pytest.mark.slow

MARKS_S = (1, 2, 3, 4)
HARNESS_SEED, GATEWAY_SEED = 45, 981  # the layout above (see the module docstring)
GATEWAY_AGE_BITS, HARNESS_AGE_BITS = 9, 11


def bucket_width_ms(age_ms: float, bits: int) -> int:
    """Width of the bucket an age falls in, for a histogram keeping ``bits`` significant bits."""
    return 1 << max(0, int(age_ms).bit_length() - bits)


def gateway_ends(ages: dict[str, dict[str, int]]) -> list[tuple[int, bool]]:
    """(age in ms, dropped) per session, from the gateway's record; drops first at equal ages."""
    ends = [(int(ms), True) for ms, n in ages["dropped_ms"].items() for _ in range(n)]
    ends += [(int(ms), False) for ms, n in ages["censored_ms"].items() for _ in range(n)]
    return sorted(ends, key=lambda end: (end[0], not end[1]))


def kaplan_meier(ends: list[tuple[int, bool]], mark_s: int) -> dict[str, Any]:
    """S(mark), at risk, events, censored: one factor (1 - 1/n) per drop, in age order."""
    at_risk, s, events, censored = len(ends), 1.0, 0, 0
    for age_ms, dropped in ends:
        if age_ms >= mark_s * 1000:
            break
        if dropped:
            s *= 1.0 - 1.0 / at_risk
            events += 1
        else:
            censored += 1
        at_risk -= 1
    estimate = None if at_risk == 0 and s > 0 else s
    return {"estimate": estimate, "at_risk": at_risk, "events": events, "censored": censored}


def _laid_out_run(tmp: Any, gateway_factory: Any) -> tuple[dict[str, Any], list[tuple[float, bool]], Any, str]:
    """One seeded run, its gateway's ends, and the tolerance it allows; ``why`` is non-empty if the layout failed."""
    tmp.mkdir()
    gw = gateway_factory(**{"faults.drop_fraction": 0.5, "faults.drop_after_s": "0.3,3.2",
                            "faults.drop_code": 1011}, seed=GATEWAY_SEED)
    run = run_locust(tmp, "--host", gw.url, "--loadkit-seed", str(HARNESS_SEED), "--guest-mix", "normal=100",
                     "--session-seconds", "1.2-3.6", "--guest-pause", "60-60", "--keepalive-interval", "0.5",
                     "--message-interval", "0.3-0.5", "--reconnect-max-attempts", "0",
                     "--survival-marks", ",".join(f"{m}s" for m in MARKS_S), users=12, rate=12, run_time="8s")
    stats = settled_stats(gw)
    report = run.report
    assert report is not None, run.stderr[-2000:]
    assert_matches_gateway(report, stats)
    ends = gateway_ends(stats["session_ages"])
    assert len(ends) == stats["sessions"]["authenticated"] == report["sessions"]["authenticated"] == 12
    drops = [age for age, dropped in ends if dropped]
    assert len(drops) == report["drops"] > 0

    # The tolerance between the two clocks, from this run: each age's two ends may each be late by up
    # to a one-way delay (bounded by the largest round trip seen), plus rounding down in both histograms.
    rtt_ms = report["latency_ms"]["message"]["max"]

    def tolerance(age_ms: float) -> float:
        return 2 * rtt_ms + bucket_width_ms(age_ms, GATEWAY_AGE_BITS) + bucket_width_ms(age_ms, HARNESS_AGE_BITS)

    near_marks = [(m, age) for m in MARKS_S for age, _ in ends if abs(age - m * 1000) <= tolerance(m * 1000)]
    near_pairs = [(d, c) for d, dropped in ends if dropped for c, kept in ends if not kept
                  and abs(d - c) <= 2 * tolerance(max(d, c))]
    censored_before_a_drop = any(c < d < 3000 for d, dropped in ends if dropped for c, kept in ends if not kept)
    at_risk_at_3s = any(age > 3000 for age, _ in ends)
    why = "" if not near_marks and not near_pairs and censored_before_a_drop and at_risk_at_3s else (
        f"the layout did not hold on this run (round trips up to {rtt_ms} ms): ends near a mark {near_marks}, "
        f"a drop and a normal end too close to order {near_pairs}; ends were {ends}")
    return report, ends, tolerance, why


def test_survival_at_each_mark_is_the_kaplan_meier_estimate_of_the_gateways_session_ages(
        tmp_path: Any, gateway_factory: Any) -> None:
    # The layout is the seeds'; whether it holds is the machine's (one slow round trip widens the
    # tolerance past a mark). A run it did not hold for compares nothing, so up to three are tried.
    failed: list[str] = []
    for attempt in range(3):
        report, ends, tolerance, why = _laid_out_run(tmp_path / f"run{attempt}", gateway_factory)
        if not why:
            break
        failed.append(why)
    assert len(failed) < 3, failed
    drops = [age for age, dropped in ends if dropped]

    for mark in MARKS_S:
        harness = report["survival"][f"{mark}s"]
        expected = kaplan_meier(ends, mark)
        got = {key: harness[key] for key in expected}
        if expected["estimate"] is not None:
            assert got["estimate"] == pytest.approx(expected["estimate"], abs=1e-6), (mark, got, expected)
            got["estimate"] = expected["estimate"]
        assert got == expected, (mark, got, expected)
    # censorings before drops: the estimate is not the share of sessions never dropped
    three = report["survival"]["3s"]
    assert three["censored"] > 0 and three["estimate"] < 1 - three["events"] / len(ends) - 1e-3
    assert report["survival"]["4s"]["estimate"] is None  # nobody at risk at 4 s: not measured
    # the curve steps where the gateway dropped (to the same tolerance), and nowhere else
    steps = [age_s * 1000 for age_s, _ in report["survival_curve"][1:-1]]
    assert len(steps) == len(set(steps)) and len(steps) <= len(drops)
    assert all(any(abs(step - d) <= tolerance(d) for d in drops) for step in steps), (steps, drops)
