"""A mergeable latency histogram with microsecond resolution.

Why our own: Locust rounds response times to whole milliseconds with about two
significant digits, so sub-millisecond loopback latencies all read 0 or 1 ms.
HdrHistogram would do, but costs ~136 KiB per histogram and ~1.8 µs per
sample in pure Python. This one keeps a dict of counts keyed by the value
rounded *down* to 11 significant bits (relative error < 0.1 %; percentiles
report the bucket's upper bound, so they never understate), records in
well under a microsecond, and merges exactly by adding counts: the
percentiles of a merge equal those of one histogram fed the union of the
samples, which is what distributed runs need.

Values are integers in microseconds. Exact ``min``, ``max`` and ``sum`` are
kept beside the buckets, so ``max`` is the true maximum, not a bucket edge.

Between processes (Locust workers → master) histograms travel in the
compact form of ``loadkit.metrics.wire``; a master of 1,000 workers merges
300 reports a second, too many to add bucket by bucket in Python. So what
is merged from the wire is kept as big integers of fixed-width fields and
added in C: ``add_runs`` turns each stretch of consecutive dense runs (a
*run*: ``CHUNK`` buckets by dense number, four-bit counts on the wire) into
two 8-bit-field integers, even and odd buckets (one ``from_bytes``, two
masks), added into ``_near``; before any field could pass 255, ``_near`` is
cut into runs and spilled into ``_dense`` (four planes per run of 16-bit
fields), once every dozen or more reports. The dict gets the counts only
when someone reads them (``counts``: the master, once per series window).
Exactness is bookkeeping, not hope: ``_near_room`` and ``_dense_room`` say
how much any field may still grow (each report says its largest count),
and a merge that would exceed them spills or folds first. Buckets outside
busy runs arrive by number (``_sparse``, ``add_sparse``).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from itertools import compress
from math import ceil

#: Values below 2**SUB_BITS µs are kept exactly; above, 11 significant bits.
SUB_BITS = 11


def bucket_of(value_us: int) -> int:
    """The bucket key (lowest value of the bucket) that ``value_us`` falls in."""
    shift = value_us.bit_length() - SUB_BITS
    if shift <= 0:
        return value_us
    return (value_us >> shift) << shift


def index_of(key: int) -> int:
    """The dense number of the bucket whose key is ``key`` (0, 1, 2, ... with no gaps)."""
    shift = key.bit_length() - SUB_BITS
    if shift <= 0:
        return key
    return (shift << (SUB_BITS - 1)) + (key >> shift)


def key_of(index: int) -> int:
    """The bucket key of dense bucket number ``index`` (the inverse of ``index_of``)."""
    if index < (1 << SUB_BITS):
        return index
    shift = (index >> (SUB_BITS - 1)) - 1
    return (index - (shift << (SUB_BITS - 1))) << shift


#: array typecodes by field width in bytes (the wire's counts are unsigned, little-endian)
TYPECODES = {array(t).itemsize: t for t in "QLIHB"}
assert all(w in TYPECODES for w in (1, 2, 4, 8)), TYPECODES
BIG_ENDIAN = sys.byteorder == "big"
#: Buckets per dense run (part of the wire format: a run is CHUNK four-bit counts). 1,024 is one
#: octave of values (runs start at powers of two); fewer, longer runs cost the master fewer Python
#: steps per report than 256 or 512 did, and the zeros they add cost the compressor little (bench/master_merge.py).
CHUNK = 1024
#: A dense run's counts are below this (four bits: larger ones travel sparse).
RUN_COUNT_LIMIT = 16
#: A run's buckets, as four planes of 16-bit fields: plane k field j is bucket 4j + k
PLANES = 4
PLANE_FIELDS = CHUNK // PLANES
_FIELD_MAX = 0xFFFF
_NEAR_MAX = 0xFF
#: a run's bytes on the wire (two four-bit counts a byte), and all of its bits
RUN_BYTES = CHUNK // 2
_RUN_MASK = (1 << (8 * RUN_BYTES)) - 1
_SPAN = 512  # ``_near``'s keys: ``(first run * _SPAN + runs) * 2 + k`` (more runs than any histogram has)
_LOW_MASKS: dict[int, int] = {}  # n -> a stretch of n runs' even buckets' four-bit counts (built once each)
#: 8-bit fields' even and odd ones, in 16-bit fields
_BYTES = int.from_bytes(b"\xff\x00" * (CHUNK // 4), "little")
#: More buckets than any histogram has (64-bit values: 54 × 1,024 + 2,048), and under 2**16.
MAX_FIELDS = 60_000


def bucket_upper(key: int) -> int:
    """The highest value that falls in the bucket whose key is ``key``."""
    shift = key.bit_length() - SUB_BITS
    if shift <= 0:
        return key
    return key + (1 << shift) - 1


class Histogram:
    """Counts of microsecond values, in buckets of 11 significant bits."""

    __slots__ = ("_counts", "_near", "_near_room", "_dense", "_sparse", "_dense_room", "count", "total", "min", "max")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        #: the latest stretches of runs from the wire: ``(first * _SPAN + n) * 2 + k`` -> an int of
        #: ``n * RUN_BYTES`` 8-bit fields, field b the count of bucket ``first * CHUNK + 2 * b + k``
        #: (odd ``k``: 4 bits up, where the wire has them); spilled before a field could pass 255
        self._near: dict[int, int] = {}
        self._near_room = _NEAR_MAX
        #: counts merged in from the wire and not yet folded into ``_counts``:
        #: ``PLANES * run + k`` -> an int of ``PLANE_FIELDS`` 16-bit fields, field j
        #: the count of bucket number ``run * CHUNK + PLANES * j + k``; no field
        #: may grow by more than ``_dense_room`` any more
        self._dense: dict[int, int] = {}
        #: bucket number (``index_of``) -> count, merged from the wire, not yet folded
        self._sparse: dict[int, int] = {}
        self._dense_room = _FIELD_MAX
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
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        self.count += 1
        self.total += value_us
        if self.max is None or value_us > self.max:
            self.max = value_us
        if self.min is None or value_us < self.min:
            self.min = value_us

    @property
    def counts(self) -> dict[int, int]:
        """bucket key -> samples in it (what was merged from the wire folded in first)."""
        if self._near or self._dense or self._sparse:
            self._fold()
        return self._counts

    @counts.setter
    def counts(self, value: dict[int, int]) -> None:
        self._counts = value
        self._dense, self._sparse, self._dense_room = {}, {}, _FIELD_MAX
        self._near, self._near_room = {}, _NEAR_MAX

    # -- merging from the wire (loadkit.metrics.wire locates and checks; these add) --

    def add_runs(self, area: memoryview, at: int, stretches: Iterable[tuple[int, int]], top: int) -> None:
        """Add dense runs by stretch (``(first run, runs)``): four-bit counts at ``area[at:]``, none above ``top``.

        Consecutive runs lie side by side in the area, so each stretch of them
        is added whole (one ``from_bytes`` and two masks, whatever its length):
        ``_spill`` cuts the stretches into runs once every dozen reports or more.
        """
        if self._near and top > self._near_room:
            self._spill()
        near = self._near
        get, from_bytes = near.get, int.from_bytes
        for first, n in stretches:
            width = RUN_BYTES * n
            x = from_bytes(area[at:at + width], "little")
            at += width
            low = _LOW_MASKS.get(n)
            if low is None:
                low = _LOW_MASKS[n] = int.from_bytes(b"\x0f" * (RUN_BYTES * n), "little")
            key = (first * _SPAN + n) * 2
            v = x & low
            if v:
                near[key] = get(key, 0) + v
            v = x & (low << 4)  # left in place (4 bits up): ``_spill`` shifts once, not every report
            if v:
                near[key + 1] = get(key + 1, 0) + v
        self._near_room -= top

    def _spill(self) -> None:
        """Move the 8-bit fields of ``_near`` into the 16-bit planes of ``_dense`` (C operations per run)."""
        near, bound = self._near, _NEAR_MAX - self._near_room
        self._near, self._near_room = {}, _NEAR_MAX
        if self._dense and bound > self._dense_room:
            self._fold_dense()
        dense = self._dense
        get, m, run_bits = dense.get, _BYTES, RUN_BYTES * 8
        for key, stretch in near.items():
            span, k = divmod(key, 2)
            first, n = divmod(span, _SPAN)
            if k:
                stretch >>= 4
            for r in range(first, first + n):
                p = stretch & _RUN_MASK
                stretch >>= run_bits
                low, high = PLANES * r + k, PLANES * r + k + 2
                v = p & m
                if v:
                    dense[low] = get(low, 0) + v
                v = (p >> 8) & m
                if v:
                    dense[high] = get(high, 0) + v
        self._dense_room -= bound

    def add_sparse(self, numbers: Iterable[int], counts: Iterable[int]) -> None:
        """Add counts by bucket number (``index_of``)."""
        sparse = self._sparse
        if sparse:
            get = sparse.get
            for i, n in zip(numbers, counts, strict=True):
                sparse[i] = get(i, 0) + n
        else:
            self._sparse = dict(zip(numbers, counts, strict=True))

    def add_summary(self, count: int, total: int, lo: int, hi: int) -> None:
        """Add the exact count and sum, and widen min and max, of samples added by bucket."""
        self.count += count
        self.total += total
        self.max = hi if self.max is None or hi > self.max else self.max
        self.min = lo if self.min is None or lo < self.min else self.min

    def merge(self, other: Histogram) -> None:
        """Add every sample of ``other`` to this histogram (exact; ``other`` is unchanged)."""
        if other._near:
            bound = _NEAR_MAX - other._near_room
            if self._near and bound > self._near_room:
                self._spill()
            if self._near:
                near = self._near
                for key, value in other._near.items():
                    near[key] = near.get(key, 0) + value
                self._near_room -= bound
            else:
                self._near, self._near_room = dict(other._near), other._near_room
        if other._dense:
            self._add_dense(other)
        if other._sparse:
            sparse = self._sparse
            if sparse:
                for i, n in other._sparse.items():
                    sparse[i] = sparse.get(i, 0) + n
            else:
                self._sparse = dict(other._sparse)
        if other._counts:
            counts = self._counts
            if counts:
                for key, n in other._counts.items():
                    counts[key] = counts.get(key, 0) + n
            else:  # an empty one (a fresh total or window): one copy in C
                self._counts = dict(other._counts)
        self.count += other.count
        self.total += other.total
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min

    def percentile(self, p: float) -> int | None:
        """The nearest-rank ``p``-th percentile, as its bucket's *upper* bound.

        The nearest rank is ``ceil(p/100 * count)``; the answer is the highest
        value of the bucket holding the sample of that rank in sorted order
        (clamped to the exact max), so it is never below the exact answer and
        at most one bucket width above it: under 2**-10 (< 0.1 %) of the value,
        exact below 2048 µs. A gate such as ``auth.p99 < 300`` therefore never
        passes on a percentile that was really above its limit. The 100th
        percentile is the exact maximum.
        """
        if not self.count:
            return None
        if p >= 100:
            return self.max
        # p * count first: 99.9 / 100 * 1000 is 999.0000000000001 in floats.
        rank = max(1, ceil(p * self.count / 100))
        seen = 0
        counts = self.counts  # once: the property folds what came from the wire
        for key in sorted(counts):
            seen += counts[key]
            if seen >= rank:
                # The true sample lies in [key, bucket_upper(key)], and
                # within [min, max]: clamp so tiny histograms read exactly.
                upper = bucket_upper(key)
                if self.max is not None and upper > self.max:
                    return self.max
                if self.min is not None and upper < self.min:
                    return self.min
                return upper
        return self.max  # unreachable unless counts are inconsistent

    def value_at_rank(self, rank: int, upper: bool) -> int | None:
        """The sample of a given rank (1-based), as its bucket's lower or upper bound (clamped)."""
        if not self.count:
            return None
        rank = min(max(rank, 1), self.count)
        seen = 0
        counts = self.counts
        for key in sorted(counts):
            seen += counts[key]
            if seen >= rank:
                value = bucket_upper(key) if upper else key
                lo = self.min if self.min is not None else value
                hi = self.max if self.max is not None else value
                return min(max(value, lo), hi)
        return self.max

    def percentile_interval(self, p: float, z: float = 1.959963984540054) -> tuple[int, int] | None:
        """A distribution-free ~95 % interval for the ``p``-th percentile (order statistics).

        The rank of the true percentile among n samples is binomial(n, p/100);
        its normal approximation gives ranks ``np ± z·sqrt(np(1-p))``, and the
        interval runs from the lower bound of the low rank's bucket to the upper
        bound of the high rank's (so bucketing only widens it). ``loadkit
        compare`` calls a change noise when the two runs' intervals overlap.
        """
        if not self.count:
            return None
        n, q = self.count, min(max(p / 100.0, 0.0), 1.0)
        half = z * (n * q * (1 - q)) ** 0.5
        lo = self.value_at_rank(int(n * q - half), upper=False)
        hi = self.value_at_rank(ceil(n * q + half) + 1, upper=True)
        assert lo is not None and hi is not None
        return lo, hi

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

    def intervals_ms(self, percentiles: Iterable[float] = (50, 90, 95, 99)) -> dict[str, list[float | None]]:
        """``{"p95": [low, high]}``: each percentile's ~95 % interval in ms (see :meth:`percentile_interval`)."""
        out: dict[str, list[float | None]] = {}
        for p in percentiles:
            ci = self.percentile_interval(p)
            if ci is not None:
                out[f"p{p:g}"] = [_ms(ci[0]), _ms(ci[1])]
        return out

    def _add_dense(self, other: Histogram) -> None:
        """Add ``other``'s dense counts to ours: one big-integer addition per plane when the fields allow."""
        bound = _FIELD_MAX - other._dense_room  # other's largest field, at most
        if self._dense and bound > self._dense_room:
            self._fold_dense()  # would not fit: what we hold goes to the dict first
        if not self._dense:
            self._dense = dict(other._dense)
            self._dense_room = other._dense_room
            return
        mine = self._dense
        for key, value in other._dense.items():
            mine[key] = mine.get(key, 0) + value
        self._dense_room -= bound

    def _fold(self) -> None:
        """Move the counts kept packed (runs, sparse bucket numbers) into the dict."""
        if self._near:
            self._spill()
        self._fold_dense()
        sparse, self._sparse = self._sparse, {}
        counts = self._counts
        for i, c in sparse.items():
            key = key_of(i)
            counts[key] = counts.get(key, 0) + c

    def _fold_dense(self) -> None:
        dense = self._dense
        self._dense, self._dense_room = {}, _FIELD_MAX
        counts = self._counts
        for plane_key, value in dense.items():
            fields = array("H")
            fields.frombytes(value.to_bytes(2 * PLANE_FIELDS, "little"))
            if BIG_ENDIAN:
                fields.byteswap()
            base = (plane_key // PLANES) * CHUNK + plane_key % PLANES
            for i, c in zip(compress(range(base, base + CHUNK, PLANES), fields), compress(fields, fields),
                            strict=True):
                key = key_of(i)
                counts[key] = counts.get(key, 0) + c

    def __bool__(self) -> bool:  # an empty histogram is falsy, like a container
        return self.count > 0

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max})"


def _ms(value_us: int | None) -> float | None:
    return None if value_us is None else round(value_us / 1000.0, 3)
