"""The fault plan: seeded, order-independent, and right in distribution."""

from __future__ import annotations

import dataclasses
import math
import statistics
from itertools import islice

import pytest

from loadkit.gateway.faults import Delay, FaultPlan, FaultSettings

N = 10_000


def plan(seed: int = 1, think: tuple[float, float] = (0.5, 2.0), **faults: object) -> FaultPlan:
    return FaultPlan(FaultSettings(**faults), seed, think)  # type: ignore[arg-type]


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# --- Delay ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0", Delay()),
        (0, Delay()),
        ("25", Delay("fixed", 25.0)),
        ("25ms", Delay("fixed", 25.0)),
        (12.5, Delay("fixed", 12.5)),
        ("fixed:25", Delay("fixed", 25.0)),
        ("lognormal:40,400", Delay("lognormal", median_ms=40.0, p99_ms=400.0)),
        ("lognormal:median_ms=40,p99_ms=400", Delay("lognormal", median_ms=40.0, p99_ms=400.0)),
        ({"fixed_ms": 5}, Delay("fixed", 5.0)),
        ({"median_ms": 4, "p99_ms": 8}, Delay("lognormal", median_ms=4.0, p99_ms=8.0)),
    ],
)
def test_delay_specs_parse(spec: object, expected: Delay) -> None:
    assert Delay.parse(spec) == expected


@pytest.mark.parametrize(
    "spec", ["gauss:3", "fixed:a", "lognormal:40", "lognormal:400,40", "lognormal:0,10", "-5", True, [1], {"mean": 3}]
)
def test_bad_delay_specs_are_refused_with_a_reason(spec: object) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        Delay.parse(spec)


def test_delay_text_round_trips() -> None:
    for delay in (Delay(), Delay("fixed", 7.5), Delay("lognormal", median_ms=40, p99_ms=400)):
        assert Delay.parse(str(delay)) == delay


def test_fixed_delay_is_constant_and_none_is_zero() -> None:
    assert Delay("fixed", 250).at(0.01) == Delay("fixed", 250).at(0.99) == 0.25
    assert Delay().at(0.5) == 0.0 and not Delay().enabled


def test_lognormal_median_and_p99_match_the_spec_on_10000_draws() -> None:
    p = plan(auth_latency=Delay("lognormal", median_ms=40, p99_ms=400))
    draws = sorted(p.session(seq).auth_delay_s * 1000 for seq in range(N))
    median, p99 = statistics.median(draws), draws[int(0.99 * N)]
    assert 40 * 0.93 < median < 40 * 1.07
    assert 400 * 0.85 < p99 < 400 * 1.15
    assert Delay("lognormal", median_ms=40, p99_ms=400).sigma == pytest.approx(math.log(10) / 2.326)


# --- FaultPlan: reproducibility ----------------------------------------------------


def test_same_seed_same_decisions_whatever_the_order_sessions_are_asked_in() -> None:
    faults = dict(drop_fraction=0.3, silent_close_after_auth=0.2, auth_latency=Delay.parse("lognormal:10,100"))
    forward = {seq: plan(7, **faults).session(seq) for seq in range(200)}
    backward = {seq: plan(7, **faults).session(seq) for seq in reversed(range(200))}
    assert forward == backward


def test_another_seed_gives_other_decisions() -> None:
    a = [plan(1, drop_fraction=0.5).session(s).drop_after_s for s in range(50)]
    b = [plan(2, drop_fraction=0.5).session(s).drop_after_s for s in range(50)]
    assert a != b


def test_switching_one_fault_on_does_not_change_another() -> None:
    base = plan(3, drop_fraction=0.2)
    more = plan(3, drop_fraction=0.2, slow_handshake=Delay.parse("fixed:5"), silent_close_after_auth=0.5,
                auth_latency=Delay.parse("lognormal:10,50"))
    for seq in range(500):
        assert base.session(seq).drop_after_s == more.session(seq).drop_after_s


def test_message_plans_are_reproducible_per_session() -> None:
    p = plan(5, ack_delay=Delay.parse("lognormal:5,50"), out_of_order=0.3)
    assert list(islice(p.messages(9), 20)) == list(islice(p.messages(9), 20))
    assert list(islice(p.messages(9), 20)) != list(islice(p.messages(10), 20))


# --- FaultPlan: fractions on 10,000 draws ---------------------------------------------


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_drop_fraction_is_statistically_right(fraction: float) -> None:
    p = plan(drop_fraction=fraction, drop_after_s=(2.0, 4.0), drop_code="reset")
    sessions = [p.session(seq) for seq in range(N)]
    dropped = [s for s in sessions if s.drop_after_s is not None]
    assert within_binomial(len(dropped), N, fraction)
    assert all(2.0 <= s.drop_after_s <= 4.0 and s.drop_code == "reset" for s in dropped)  # type: ignore[operator]


def test_silent_close_fraction_is_statistically_right() -> None:
    p = plan(silent_close_after_auth=0.05)
    assert within_binomial(sum(p.session(seq).silent_close for seq in range(N)), N, 0.05)


def test_refused_and_stalled_upgrades_are_disjoint_and_right() -> None:
    p = plan(refuse_upgrades_fraction=0.2, refuse_upgrades_status=429, stall_handshake_fraction=0.1)
    sessions = [p.session(seq) for seq in range(N)]
    refused = sum(s.refuse_status == 429 for s in sessions)
    stalled = sum(s.stall for s in sessions)
    assert within_binomial(refused, N, 0.2)
    assert within_binomial(stalled, N, 0.8 * 0.1)  # a refused upgrade cannot also stall
    assert not any(s.stall and s.refuse_status for s in sessions)


def test_out_of_order_fraction_and_extra_delay() -> None:
    p = plan(out_of_order=0.25, out_of_order_delay=Delay.parse("fixed:100"), ack_delay=Delay.parse("fixed:1"))
    msgs = list(islice(p.messages(0), N))
    late = [m for m in msgs if m.out_of_order]
    assert within_binomial(len(late), N, 0.25)
    assert all(m.ack_delay_s == pytest.approx(0.101) for m in late)
    assert all(m.ack_delay_s == pytest.approx(0.001) for m in msgs if not m.out_of_order)


def test_agent_think_time_is_uniform_in_range_plus_agent_delay() -> None:
    p = plan(think=(0.5, 2.0), agent_delay=Delay.parse("fixed:100"))
    thinks = [m.agent_delay_s for m in islice(p.messages(1), N)]
    assert min(thinks) >= 0.6 and max(thinks) <= 2.1
    assert statistics.mean(thinks) == pytest.approx(1.35, abs=0.03)


def test_everything_is_off_by_default() -> None:
    p = plan()
    s = p.session(0)
    assert s == dataclasses.replace(s, refuse_status=None, stall=False, handshake_delay_s=0.0, silent_close=False,
                                    auth_delay_s=0.0, drop_after_s=None)
    assert {m.ack_delay_s for m in islice(p.messages(0), 100)} == {0.0}


@pytest.mark.parametrize(
    "bad",
    [dict(drop_fraction=1.5), dict(drop_code=999), dict(drop_code=1000), dict(refuse_upgrades_status=500),
     dict(drop_after_s=(5.0, 1.0)), dict(restart_pause_s=-1.0), dict(out_of_order=-0.1)],
)
def test_fault_settings_validate(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="faults\\."):
        FaultSettings(**bad)  # type: ignore[arg-type]


def test_a_degraded_auth_latency_uses_the_same_draw_and_moves_no_other_decision():
    from loadkit.gateway.faults import Delay, FaultPlan, FaultSettings

    base = FaultSettings(drop_fraction=0.3, auth_latency=Delay("fixed", 5.0))
    degraded = FaultSettings(drop_fraction=0.3, auth_latency=Delay("fixed", 5.0), degrade_at_s=60,
                             degraded_auth_latency=Delay("lognormal", median_ms=100, p99_ms=400))
    for seq in range(200):
        a, b = FaultPlan(base, 7).session(seq), FaultPlan(degraded, 7).session(seq)
        assert (a.drop_after_s, a.auth_delay_s, a.refuse_status) == (b.drop_after_s, b.auth_delay_s, b.refuse_status)
        assert a.degraded_auth_delay_s == 0.0 and b.degraded_auth_delay_s > 0.0
