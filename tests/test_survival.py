"""Kaplan-Meier survival: a hand-computed example, censoring, the interval, merging."""

from __future__ import annotations

import itertools
import math

import pytest

from loadkit.metrics.histogram import Histogram
from loadkit.metrics.survival import curve, estimate_at


def ages(*seconds: float) -> Histogram:
    h = Histogram()
    for s in seconds:
        h.record(int(s * 1000))
    return h


# Five authenticated sessions: drops at 10 s and 20 s; censored (normal end, harness stop) at 15, 30, 40 s.
DROPS, CENSORED = ages(10, 20), ages(15, 30, 40)


def test_the_estimate_matches_the_hand_computed_product_limit() -> None:
    # t=10: 5 at risk, 1 drop -> S = 4/5. t=15: censored, 4 -> 3 at risk. t=20: 3 at risk, 1 drop -> S = 4/5 * 2/3.
    e = estimate_at(25, DROPS, CENSORED)
    assert e.estimate == pytest.approx(8 / 15)
    assert (e.at_risk, e.events, e.censored) == (2, 2, 1)
    # Greenwood: sum d/(n(n-d)) = 1/(5*4) + 1/(3*2) = 0.216667; log-log interval S ** exp(-+1.96 se),
    # se = sqrt(0.216667) / |ln(8/15)| = 0.74048: by hand, [0.0683, 0.8631].
    assert e.lower == pytest.approx(0.0683, abs=5e-4)
    assert e.upper == pytest.approx(0.8631, abs=5e-4)


def test_before_any_drop_the_lower_bound_is_the_exact_binomial_one() -> None:
    e = estimate_at(5, DROPS, CENSORED)
    assert e.estimate == 1.0 and e.at_risk == 5 and e.events == 0
    assert e.lower == pytest.approx(0.025 ** (1 / 5)) and e.upper == 1.0


def test_a_drop_exactly_at_the_mark_did_not_survive_it() -> None:
    e = estimate_at(10, DROPS, CENSORED)
    assert e.estimate == pytest.approx(0.8) and e.at_risk == 5 and e.events == 1


def test_a_mark_nobody_reached_is_not_measured() -> None:
    e = estimate_at(60, DROPS, CENSORED)
    assert e.estimate is None and e.lower is None and e.at_risk == 0
    assert e.as_dict()["rate"] is None


def test_normal_ends_do_not_bias_it_down() -> None:
    """The seed bug: 100 sessions, 10 dropped at 30 s, 90 closed normally at 40 s. At 1 minute nobody is at risk."""
    drops, ok = ages(*[30] * 10), ages(*[40] * 90)
    assert estimate_at(35, drops, ok).estimate == pytest.approx(0.9)
    assert estimate_at(60, drops, ok).estimate is None


def test_everyone_dropped_is_a_measured_zero() -> None:
    e = estimate_at(60, ages(1, 2, 3), Histogram())
    assert e.estimate == 0.0 and e.at_risk == 0 and e.lower == 0.0


def test_merged_histograms_give_the_same_estimate_as_one() -> None:
    a_drops, a_ok, b_drops, b_ok = ages(10), ages(15, 30), ages(20), ages(40)
    a_drops.merge(b_drops)
    a_ok.merge(b_ok)
    assert estimate_at(25, a_drops, a_ok) == estimate_at(25, DROPS, CENSORED)


def test_the_curve_steps_down_at_each_drop_and_ends_at_the_oldest_age() -> None:
    points = curve(DROPS, CENSORED)
    assert points[0] == [0.0, 1.0] and points[-1] == [40.0, pytest.approx(8 / 15, abs=1e-6)]
    assert [p[0] for p in points[1:-1]] == [10.0, 20.0]
    assert all(b[1] <= a[1] for a, b in itertools.pairwise(points))
    assert len(curve(ages(*range(1, 2000)), Histogram(), max_points=50)) <= 52
    assert math.isclose(curve(ages(*range(1, 2000)), Histogram())[-1][1], 0.0)
