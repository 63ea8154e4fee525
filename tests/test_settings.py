"""Harness option parsers: good values, and one exact line for each bad one; backoff bounds."""

from __future__ import annotations

import random

import pytest

from loadkit.errors import ConfigError
from loadkit.settings import (
    BEHAVIOURS,
    Behaviour,
    HarnessSettings,
    backoff,
    behaviour,
    mark_label,
    parse_count,
    parse_marks,
    parse_mix,
    parse_range,
    parse_seconds,
)


def error_of(call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text, "a config error is one line"
    return text


# -- parse_range ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("5-10", (5.0, 10.0)),
    ("7", (7.0, 7.0)),
    (" 5 - 10 ", (5.0, 10.0)),
    ("0.5-1.5", (0.5, 1.5)),
    (".25-3", (0.25, 3.0)),
    ("0", (0.0, 0.0)),
    ("3-3", (3.0, 3.0)),
])
def test_parse_range_reads_min_max_or_a_single_value(text: str, expected: tuple[float, float]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "5-", "-5", "5-10-15", "5..10", "1e3", "5 to 10", "-1-2"])
def test_parse_range_refuses_what_is_not_min_max(text: str) -> None:
    assert error_of(parse_range, text, "--session-seconds") == (
        f"--session-seconds must be MIN-MAX in seconds (e.g. 5-10), got {text.strip()!r}")


def test_parse_range_refuses_min_above_max_and_says_how_to_write_it() -> None:
    assert error_of(parse_range, "10-5", "--message-interval") == (
        "--message-interval must be MIN-MAX with MIN <= MAX, got '10-5': write 5-10")


def test_parse_range_refuses_a_min_below_its_minimum() -> None:
    assert error_of(parse_range, "0.1-2", "--pause", minimum=0.5) == "--pause must be at least 0.5, got '0.1-2'"
    assert parse_range("0.5-2", minimum=0.5) == (0.5, 2.0)


def test_parse_range_names_the_option_value_by_default() -> None:
    assert error_of(parse_range, "x").startswith("value must be MIN-MAX")


# -- parse_seconds -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("2.5", 2.5), ("20", 20.0), (3, 3.0), (0.25, 0.25), (" 4 ", 4.0)])
def test_parse_seconds_reads_a_number(text: str | float, expected: float) -> None:
    assert parse_seconds(text) == expected


def test_parse_seconds_may_allow_zero() -> None:
    assert parse_seconds("0", positive=False) == 0.0


@pytest.mark.parametrize(("text", "positive", "message"), [
    ("abc", True, "--pong-timeout must be a number of seconds, got 'abc'"),
    ("", True, "--pong-timeout must be a number of seconds, got ''"),
    (None, True, "--pong-timeout must be a number of seconds, got None"),
    ("0", True, "--pong-timeout must be greater than 0, got '0'"),
    ("-1", True, "--pong-timeout must be greater than 0, got '-1'"),
    ("-1", False, "--pong-timeout must be at least 0, got '-1'"),
    (-0.5, False, "--pong-timeout must be at least 0, got -0.5"),
])
def test_parse_seconds_refuses_with_one_line(text: object, positive: bool, message: str) -> None:
    assert error_of(parse_seconds, text, "--pong-timeout", positive) == message


def test_parse_seconds_refuses_not_a_number() -> None:
    error_of(parse_seconds, "nan", "--keepalive-interval")


# -- parse_count -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("0", 0), ("5", 5), (" 12 ", 12), (40, 40)])
def test_parse_count_reads_a_whole_number(text: str | int, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("1.5", "--message-chars must be a whole number, got '1.5'"),
    ("ten", "--message-chars must be a whole number, got 'ten'"),
    ("", "--message-chars must be a whole number, got ''"),
    (None, "--message-chars must be a whole number, got None"),
    ("-1", "--message-chars must be at least 0, got '-1'"),
    (-3, "--message-chars must be at least 0, got -3"),
])
def test_parse_count_refuses_with_one_line(text: object, message: str) -> None:
    assert error_of(parse_count, text, "--message-chars") == message


# -- parse_mix --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("normal=95,no_keepalive=5", (("normal", 95.0), ("no_keepalive", 5.0))),
    ("normal", (("normal", 1.0),)),
    (" normal = 9 , wrong_case=1, ", (("normal", 9.0), ("wrong_case", 1.0))),
    ("normal=0,bad_token=0.5", (("normal", 0.0), ("bad_token", 0.5))),
    (",".join(BEHAVIOURS), tuple((name, 1.0) for name in BEHAVIOURS)),
])
def test_parse_mix_reads_weights_per_behaviour(text: str, expected: tuple[tuple[str, float], ...]) -> None:
    assert parse_mix(text) == expected


def test_parse_mix_refuses_an_unknown_behaviour_and_lists_the_known_ones() -> None:
    assert error_of(parse_mix, "normal=9,nope=1") == (
        "guest mix: unknown behaviour 'nope'; expected NAME=WEIGHT with NAME one of "
        "normal, no_keepalive, wrong_case, command_auth, bad_token, no_auth, fast_messages")


@pytest.mark.parametrize(("text", "message"), [
    ("normal=x", "guest mix: weight of 'normal' must be a number, got 'x'"),
    ("normal=", "guest mix: weight of 'normal' must be a number, got ''"),
    ("normal=-1", "guest mix: weight of 'normal' must be at least 0, got '-1'"),
    ("", "guest mix must name at least one behaviour with a positive weight, got ''"),
    (" , ", "guest mix must name at least one behaviour with a positive weight, got ' , '"),
    ("normal=0", "guest mix must name at least one behaviour with a positive weight, got 'normal=0'"),
])
def test_parse_mix_refuses_with_one_line(text: str, message: str) -> None:
    assert error_of(parse_mix, text) == message


@pytest.mark.parametrize("text", ["normal=nan", "normal=1,no_auth=inf"])
def test_parse_mix_refuses_weights_that_are_not_finite(text: str) -> None:
    error_of(parse_mix, text)


def test_every_behaviour_of_the_mix_builds() -> None:
    for name in BEHAVIOURS:
        assert behaviour(name).name == name
    assert behaviour("normal") == Behaviour()
    assert behaviour("wrong_case").auth_style == "wrong_case"
    assert behaviour("no_keepalive").keepalive is False


# -- parse_marks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1m,5m,30m,60m", (60, 300, 1800, 3600)),
    ("90s, 1h, 45", (45, 90, 3600)),
    ("5m,300,300s", (300,)),
    ("60m,1m", (60, 3600)),
    (" 2h ", (7200,)),
])
def test_parse_marks_reads_durations_sorted_without_duplicates(text: str, expected: tuple[int, ...]) -> None:
    assert parse_marks(text) == expected


@pytest.mark.parametrize(("text", "bad"), [
    ("0", "0"), ("1m,0s", "0s"), ("5x", "5x"), ("1d", "1d"), ("", ""), ("1m,,5m", ""), ("-5m", "-5m"),
    ("1.5m", "1.5m"), ("m", "m"),
])
def test_parse_marks_refuses_what_is_not_a_duration(text: str, bad: str) -> None:
    assert error_of(parse_marks, text) == f"survival marks must be durations like 90s, 5m, 1h, got {bad!r}"


@pytest.mark.parametrize(("seconds", "label"), [(45, "45s"), (90, "90s"), (60, "1m"), (300, "5m"),
                                                (3600, "60m"), (7200, "2h")])
def test_a_mark_is_labelled_in_its_largest_whole_unit_but_an_hour_is_60m(seconds: int, label: str) -> None:
    assert mark_label(seconds) == label


# -- settings as a whole -------------------------------------------------------------------------------


def test_the_default_settings_are_valid_and_serialisable() -> None:
    settings = HarnessSettings().validate()
    data = settings.as_dict()
    assert "extra" not in data and data["guest_mix"] == [["normal", 1.0]]


@pytest.mark.parametrize(("change", "message"), [
    ({"keepalive_s": 0}, "--keepalive-interval must be greater than 0, got 0"),
    ({"pong_timeout_s": -1}, "--pong-timeout must be greater than 0, got -1"),
    ({"session_seconds": (10, 5)}, "--session-seconds must be MIN-MAX with 0 <= MIN <= MAX, got 10-5"),
    ({"pause_between": (-1, 5)}, "--pause-between must be MIN-MAX with 0 <= MIN <= MAX, got -1-5"),
    ({"reconnect_base_s": 0}, "--reconnect-backoff must be BASE-CAP with 0 < BASE <= CAP"),
    ({"reconnect_base_s": 20, "reconnect_cap_s": 10}, "--reconnect-backoff must be BASE-CAP with 0 < BASE <= CAP"),
])
def test_validate_refuses_inconsistent_settings_with_one_line(change: dict[str, object], message: str) -> None:
    assert error_of(HarnessSettings(**change).validate) == message  # type: ignore[arg-type]


# -- backoff -------------------------------------------------------------------------------------------


class Extreme(random.Random):
    """A random source that always answers the lowest (or highest) value of a range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def nominal(attempt: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** max(0, attempt - 1))


@pytest.mark.parametrize(("base", "cap"), [(0.5, 15.0), (0.1, 0.1), (1.0, 60.0), (0.25, 7.0)])
def test_backoff_stays_between_half_and_all_of_the_nominal_delay(base: float, cap: float) -> None:
    rng = random.Random(f"{base}/{cap}")
    for attempt in range(0, 40):
        d = nominal(attempt, base, cap)
        for _ in range(50):
            assert d / 2 <= backoff(attempt, base, cap, rng) <= d <= cap


def test_backoff_reaches_both_ends_of_its_jitter() -> None:
    assert backoff(3, 0.5, 15.0, Extreme(high=False)) == 1.0
    assert backoff(3, 0.5, 15.0, Extreme(high=True)) == 2.0


def test_backoff_doubles_until_the_cap_then_stays_there() -> None:
    lows = [backoff(n, 0.5, 15.0, Extreme(high=False)) for n in range(1, 10)]
    highs = [backoff(n, 0.5, 15.0, Extreme(high=True)) for n in range(1, 10)]
    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]
    assert lows == [h / 2 for h in highs]


def test_each_backoff_is_at_least_the_longest_previous_one_until_the_cap() -> None:
    base, cap = 0.5, 15.0
    for attempt in range(1, 5):  # next nominal delays 1, 2, 4, 8: all under the cap (attempt 6 would be 16)
        assert backoff(attempt + 1, base, cap, Extreme(high=False)) >= backoff(attempt, base, cap, Extreme(high=True))


def test_the_first_attempt_and_attempt_zero_wait_the_same() -> None:
    assert backoff(0, 0.5, 15.0, random.Random(1)) == backoff(1, 0.5, 15.0, random.Random(1))


def test_backoff_stays_at_the_cap_for_any_attempt() -> None:
    assert backoff(2000, 0.5, 15.0, Extreme(high=True)) == 15.0
