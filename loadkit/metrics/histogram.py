"""A mergeable latency histogram with microsecond resolution.

Why our own: Locust rounds response times to whole milliseconds with about two
significant digits, so sub-millisecond loopback latencies all read 0 or 1 ms.
HdrHistogram would do, but costs ~136 KiB per histogram and ~1.8 µs per
sample in pure Python. This one keeps a dict of counts keyed by the value
rounded *down* to 11 significant bits (relative error < 0.1 %), records in
well under a microsecond, and merges exactly by adding counts: the
percentiles of a merge equal those of one histogram fed the union of the
samples, which is what distributed runs need.

Values are integers in microseconds. Exact ``min``, ``max`` and ``sum`` are
kept beside the buckets, so ``max`` is the true maximum, not a bucket edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from math import ceil

#: Values below 2**SUB_BITS µs are kept exactly; above, 11 significant bits.
SUB_BITS = 11


def bucket_of(value_us: int) -> int:
    """The bucket key (lowest value of the bucket) that ``value_us`` falls in."""
    shift = value_us.bit_length() - SUB_BITS
    if shift <= 0:
        return value_us
    return (value_us >> shift) << shift


def bucket_upper(key: int) -> int:
    """The highest value that falls in the bucket whose key is ``key``."""
    shift = key.bit_length() - SUB_BITS
    if shift <= 0:
        return key
    return key + (1 << shift) - 1


class Histogram:
    """Counts of microsecond values, in buckets of 11 significant bits."""

    __slots__ = ("counts", "count", "total", "min", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def record(self, value_us: int) -> None:
        """Add one sample. Negative values (clock oddities) count as 0."""
        if value_us < 0:
            value_us = 0
        shift = value_us.bit_length() - SUB_BITS
        key = value_us if shift <= 0 else (value_us >> shift) << shift
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.count += 1
        self.total += value_us
        if self.max is None or value_us > self.max:
            self.max = value_us
        if self.min is None or value_us < self.min:
            self.min = value_us

    def merge(self, other: Histogram) -> None:
        """Add every sample of ``other`` to this histogram (exact)."""
        counts = self.counts
        for key, n in other.counts.items():
            counts[key] = counts.get(key, 0) + n
        self.count += other.count
        self.total += other.total
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min

    def percentile(self, p: float) -> int | None:
        """The nearest-rank ``p``-th percentile, as its bucket's key.

        The nearest rank is ``ceil(p/100 * count)``; the answer is the bucket
        holding the sample of that rank in sorted order, so it never differs
        from the exact answer by more than the bucket width (< 0.1 %). The
        100th percentile is the exact maximum.
        """
        if not self.count:
            return None
        if p >= 100:
            return self.max
        # p * count first: 99.9 / 100 * 1000 is 999.0000000000001 in floats.
        rank = max(1, ceil(p * self.count / 100))
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                # The true sample lies in [key, bucket_upper(key)], and
                # within [min, max]: clamp so tiny histograms read exactly.
                if self.max is not None and key > self.max:
                    return self.max
                if self.min is not None and key < self.min:
                    return self.min
                return key
        return self.max  # unreachable unless counts are inconsistent

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def summary_ms(self, percentiles: Iterable[float] = (50, 90, 95, 99)) -> dict[str, float | int | None]:
        """count, min, mean, the given percentiles and max, in milliseconds."""
        out: dict[str, float | int | None] = {"count": self.count}
        out["min"] = _ms(self.min)
        mean = self.mean()
        out["mean"] = None if mean is None else round(mean / 1000.0, 3)
        for p in percentiles:
            out[f"p{p:g}"] = _ms(self.percentile(p))
        out["max"] = _ms(self.max)
        return out

    # -- transport between processes (Locust workers → master) -------------

    def to_wire(self) -> dict[str, object]:
        """A msgpack/JSON-safe form: keys and counts as two parallel lists."""
        keys = list(self.counts)
        return {
            "k": keys,
            "n": [self.counts[k] for k in keys],
            "t": self.total,
            "lo": self.min,
            "hi": self.max,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> Histogram:
        hist = cls()
        keys = data["k"]
        counts = data["n"]
        assert isinstance(keys, list) and isinstance(counts, list)
        hist.counts = {int(k): int(n) for k, n in zip(keys, counts)}
        hist.count = sum(hist.counts.values())
        hist.total = int(data["t"])  # type: ignore[arg-type]
        hist.min = data["lo"]  # type: ignore[assignment]
        hist.max = data["hi"]  # type: ignore[assignment]
        return hist

    def __bool__(self) -> bool:  # an empty histogram is falsy, like a container
        return self.count > 0

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max})"


def _ms(value_us: int | None) -> float | None:
    return None if value_us is None else round(value_us / 1000.0, 3)
