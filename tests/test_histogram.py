"""The mergeable µs histogram: percentiles against a sorted list, exact merges, dense bucket numbers.

The oracle is the definition the docstring gives: the nearest rank of the
p-th percentile of n samples is ``ceil(p/100 · n)`` (at least 1), computed
here in exact rational arithmetic; the histogram must answer the bucket key
of the sample of that rank, clamped to the exact min, and the exact max at
p100.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction

import pytest

from loadkit.metrics.histogram import (
    SUB_BITS,
    Histogram,
    bucket_of,
    bucket_upper,
    index_of,
    key_of,
)

PERCENTILES = (0, 0.1, 1, 10, 25, 33.3, 50, 66.6, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)


def nearest_rank(p: float, n: int) -> int:
    """``ceil(p/100 · n)``, at least 1, without floating-point error."""
    return max(1, math.ceil(Fraction(str(p)) * n / 100))


def expected_percentile(ordered: list[int], p: float) -> int:
    """What the histogram must answer: the upper bound of the nearest-rank sample's bucket, clamped to max."""
    if p >= 100:
        return ordered[-1]
    upper = bucket_upper(bucket_of(ordered[nearest_rank(p, len(ordered)) - 1]))
    return min(max(upper, ordered[0]), ordered[-1])


def fed(samples: list[int]) -> Histogram:
    hist = Histogram()
    for value in samples:
        hist.record(value)
    return hist


def assert_same_histogram(got: Histogram, want: Histogram) -> None:
    assert got.counts == want.counts
    assert (got.count, got.total, got.min, got.max) == (want.count, want.total, want.min, want.max)
    assert got.mean() == want.mean()
    for p in PERCENTILES:
        assert got.percentile(p) == want.percentile(p), f"p{p:g}"


def _uniform_sub_ms(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(0, 1000) for _ in range(n)]


def _exponential_ms(rng: random.Random, n: int) -> list[int]:
    return [int(rng.expovariate(1 / 3000)) for _ in range(n)]


def _lognormal(rng: random.Random, n: int) -> list[int]:
    return [int(rng.lognormvariate(9, 2)) for _ in range(n)]


def _huge(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(10**12, 10**15) for _ in range(n)] + [2**62 + 12345]


def _bimodal(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(200, 900) if rng.random() < 0.9 else rng.randrange(2_000_000, 9_000_000)
            for _ in range(n)]


def _bucket_edges(rng: random.Random, n: int) -> list[int]:
    out = []
    for _ in range(n):
        key = bucket_of(rng.randrange(2**SUB_BITS, 2**40))
        out.append(rng.choice((key, key - 1, bucket_upper(key), bucket_upper(key) + 1)))
    return out


def _constant(rng: random.Random, n: int) -> list[int]:
    return [123_456_789] * n


DISTRIBUTIONS: dict[str, Callable[[random.Random, int], list[int]]] = {
    "uniform sub-millisecond": _uniform_sub_ms,
    "exponential around 3 ms": _exponential_ms,
    "log-normal, µs to minutes": _lognormal,
    "huge values": _huge,
    "bimodal": _bimodal,
    "bucket edges": _bucket_edges,
    "constant": _constant,
}

# Sizes where float and exact nearest ranks agree for every PERCENTILES entry;
# the sizes where they don't are the xfail test further down.
SIZES = (1, 2, 3, 17, 641, 4999)


# -- buckets -------------------------------------------------------------------


def test_values_below_two_to_the_sub_bits_are_their_own_bucket() -> None:
    for value in range(2**SUB_BITS):
        assert bucket_of(value) == value == bucket_upper(value)


@pytest.mark.parametrize("seed", range(3))
def test_every_value_lies_within_its_bucket_and_the_bucket_is_under_a_tenth_of_a_percent(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5000):
        value = rng.randrange(0, 2 ** rng.randrange(1, 64))
        key = bucket_of(value)
        assert key <= value <= bucket_upper(key)
        assert bucket_of(key) == bucket_of(bucket_upper(key)) == key
        assert value - key < max(1, value) / 1024


def test_a_bucket_is_narrower_than_the_documented_tenth_of_a_percent() -> None:
    value = 4096 + 3  # bit length 13: bucket 4096..4099
    assert (value - bucket_of(value)) / value < 0.001


def test_the_value_after_a_bucket_upper_edge_starts_the_next_bucket() -> None:
    for key in (2**SUB_BITS, 3000, 2**20, 2**40 + 2**35, 2**62):
        key = bucket_of(key)
        assert bucket_of(bucket_upper(key) + 1) == bucket_upper(key) + 1
        assert bucket_of(bucket_upper(key) + 1) > key


# -- percentiles ---------------------------------------------------------------


@pytest.mark.parametrize("name", DISTRIBUTIONS)
@pytest.mark.parametrize("n", SIZES)
def test_percentiles_equal_the_bucket_of_the_nearest_rank_sample_of_a_sorted_list(name: str, n: int) -> None:
    rng = random.Random(f"{name}/{n}")
    samples = DISTRIBUTIONS[name](rng, n)
    hist = fed(samples)
    ordered = sorted(samples)
    for p in PERCENTILES:
        got = hist.percentile(p)
        assert got == expected_percentile(ordered, p), f"p{p:g} of {len(samples)}"
        if p < 100:  # never below the exact answer, never more than one bucket (2**-10) above it
            exact = ordered[nearest_rank(p, len(ordered)) - 1]
            assert got is not None and exact <= got <= exact + (exact >> (SUB_BITS - 1))


@pytest.mark.parametrize(("p", "n"), [(99.9, 1000), (99.9, 2000), (7, 100)])
def test_the_nearest_rank_is_exact_for_round_sample_counts(p: float, n: int) -> None:
    hist = fed(list(range(1, n + 1)))  # the sample of rank k is k, its own bucket
    assert hist.percentile(p) == bucket_upper(bucket_of(nearest_rank(p, n)))


def test_the_hundredth_percentile_is_the_exact_maximum_not_a_bucket_key() -> None:
    value = 2**30 + 12345
    hist = fed([5, value])
    assert bucket_of(value) != value
    assert hist.percentile(100) == hist.max == value
    assert hist.percentile(150) == value


def test_a_single_sample_reads_exactly_at_every_percentile() -> None:
    value = 987_654_321  # far from a bucket key: only clamping makes it exact
    hist = fed([value])
    for p in PERCENTILES:
        assert hist.percentile(p) == value


def test_a_percentile_is_its_buckets_upper_bound_so_a_gate_never_passes_on_an_understated_value() -> None:
    low = 2**20 + 7
    hist = fed([low, 2**30])
    assert bucket_of(low) < low
    assert hist.percentile(1) == bucket_upper(bucket_of(low)) > low


def test_an_empty_histogram_has_no_percentiles_mean_min_or_max() -> None:
    hist = Histogram()
    assert not hist
    assert hist.percentile(50) is None and hist.percentile(100) is None
    assert hist.mean() is None and hist.min is None and hist.max is None


def test_a_negative_sample_counts_as_zero() -> None:
    hist = fed([-5, 10])
    assert (hist.count, hist.min, hist.total) == (2, 0, 10)
    assert hist.percentile(50) == 0


def test_count_total_min_max_and_mean_are_exact() -> None:
    samples = [3, 2**40 + 1, 77, 2**40 + 1, 999_999]
    hist = fed(samples)
    assert hist.count == 5 and bool(hist)
    assert hist.total == sum(samples)
    assert (hist.min, hist.max) == (3, 2**40 + 1)
    assert hist.mean() == sum(samples) / 5
    assert repr(hist) == f"Histogram(count=5, min=3, max={2**40 + 1})"


# -- merge -----------------------------------------------------------------------


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_merge_of_histograms_equals_one_fed_the_union(name: str) -> None:
    rng = random.Random(name)
    parts = [DISTRIBUTIONS[name](rng, n) for n in (1, 250, 3001)]
    merged = Histogram()
    for part in parts:
        merged.merge(fed(part))
    assert_same_histogram(merged, fed([v for part in parts for v in part]))


def test_merge_of_two_histograms_equals_one_fed_the_union() -> None:
    rng = random.Random(7)
    a, b = _lognormal(rng, 2000), _uniform_sub_ms(rng, 1500)
    merged = fed(a)
    merged.merge(fed(b))
    assert_same_histogram(merged, fed(a + b))


def test_merging_an_empty_histogram_changes_nothing_either_way() -> None:
    full = fed([1, 20_000, 3_000_000])
    into_full = fed([1, 20_000, 3_000_000])
    into_full.merge(Histogram())
    assert_same_histogram(into_full, full)
    into_empty = Histogram()
    into_empty.merge(full)
    assert_same_histogram(into_empty, full)


def test_merge_leaves_the_merged_in_histogram_unchanged() -> None:
    other = fed([5, 6, 7])
    Histogram().merge(other)
    assert_same_histogram(other, fed([5, 6, 7]))


# -- dense bucket numbers (the wire form's runs: tests/test_wire.py) ---------------


def test_dense_bucket_numbers_have_no_gaps_and_invert() -> None:
    keys = sorted({bucket_of(v) for v in range(0, 1 << 16)} | {bucket_of(1 << e) for e in range(16, 64)})
    for key in keys:
        assert key_of(index_of(key)) == key
    dense = [index_of(k) for k in keys if k < 1 << 16]
    assert dense == list(range(len(dense)))  # every bucket below 2**16 numbered 0, 1, 2, ...


# -- summary ------------------------------------------------------------------------


def test_summary_ms_gives_count_min_mean_percentiles_and_max_in_milliseconds() -> None:
    hist = fed([250, 1_000, 1_500, 2_000, 1_234_567])
    summary = hist.summary_ms()
    assert list(summary) == ["count", "min", "mean", "p50", "p90", "p95", "p99", "max"]
    assert summary == {
        "count": 5,
        "min": 0.25,
        "mean": round((250 + 1_000 + 1_500 + 2_000 + 1_234_567) / 5 / 1000, 3),
        "p50": 1.5,
        # the sample of rank 5 is 1_234_567: its bucket's upper bound, clamped to the exact max
        "p90": 1234.567,
        "p95": 1234.567,
        "p99": 1234.567,
        "max": 1234.567,
    }


def test_summary_ms_names_fractional_percentiles_without_trailing_zeros() -> None:
    summary = fed([1_000] * 10).summary_ms((50, 99.9))
    assert list(summary) == ["count", "min", "mean", "p50", "p99.9", "max"]
    assert summary["p99.9"] == 1.0


def test_summary_ms_of_an_empty_histogram_is_all_none_but_the_count() -> None:
    assert Histogram().summary_ms() == {"count": 0, "min": None, "mean": None, "p50": None,
                                        "p90": None, "p95": None, "p99": None, "max": None}
