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

Between processes (Locust workers → master) a histogram travels in a compact
form (``to_wire``, version ``WIRE_VERSION``): its buckets are numbered
densely (``index_of``), the counts of the occupied range are laid out as
fixed-width little-endian integers and deflated. A master of 1,000 workers
merges about 300 such reports a second, each with a few thousand buckets:
merging them bucket by bucket in Python would take more than a core. So a
histogram that arrives from the wire is kept as big integers made of
fixed-width fields, one per run of ``CHUNK`` buckets (``_dense``: chunk c's
field i is the count of bucket ``c * CHUNK + i``), and merging two of those
is one big-integer addition per chunk, done in C. The counts are folded into the dict only when someone reads them
(``counts``), which the master does once per series window, not per worker
report. Exactness is kept by bookkeeping, not hope: ``_dense_room`` is how
much any field may still grow without spilling into its neighbour (each
report says its largest count), and a merge that would exceed it folds
first. Fields are two bytes wide for reports whose counts fit in one byte
(nearly all: a worker's 3 s rarely puts 256 samples in one 0.1 % bucket), so
the master's integers stay small.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping
from itertools import accumulate, compress, pairwise
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


#: The version of the wire form (``to_wire``); a receiver refuses any other.
WIRE_VERSION = 2
#: array typecodes by field width in bytes (the wire's counts are unsigned, little-endian)
_TYPECODES = {array(t).itemsize: t for t in "QLIHB"}
assert all(w in _TYPECODES for w in (1, 2, 4, 8)), _TYPECODES
_BIG_ENDIAN = sys.byteorder == "big"
#: Buckets per dense chunk (part of the wire format: a chunk is CHUNK counts).
CHUNK = 256
#: A chunk with fewer occupied buckets than this goes sparse: merging a
#: sparse bucket costs the master about as much as inflating and converting
#: ``CHUNK / DENSE_MIN`` dense fields (measured with bench/master_merge.py).
DENSE_MIN = 8
#: More buckets than any histogram has (64-bit values: 54 × 1,024 + 2,048).
MAX_FIELDS = 60_000


class WireError(ValueError):
    """A histogram or recorder on the wire that this loadkit cannot read (version or shape)."""


def bucket_upper(key: int) -> int:
    """The highest value that falls in the bucket whose key is ``key``."""
    shift = key.bit_length() - SUB_BITS
    if shift <= 0:
        return key
    return key + (1 << shift) - 1


class Histogram:
    """Counts of microsecond values, in buckets of 11 significant bits."""

    __slots__ = ("_counts", "_dense", "_dense_width", "_dense_room", "count", "total", "min", "max")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        #: counts merged in from the wire and not yet folded into ``_counts``:
        #: chunk number -> an int of ``CHUNK`` fields of ``_dense_width`` bytes,
        #: field i the count of bucket ``chunk * CHUNK + i``; no field may grow
        #: by more than ``_dense_room`` any more
        self._dense: dict[int, int] = {}
        self._dense_width = 0
        self._dense_room = 0
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
        if self._dense:
            self._fold()
        return self._counts

    @counts.setter
    def counts(self, value: dict[int, int]) -> None:
        self._counts = value
        self._dense = {}

    def merge(self, other: Histogram) -> None:
        """Add every sample of ``other`` to this histogram (exact; ``other`` is unchanged)."""
        if other._dense:
            self._add_dense(other)
        if other._counts:
            counts = self._counts
            for key, n in other._counts.items():
                counts[key] = counts.get(key, 0) + n
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

    # -- transport between processes (Locust workers → master) -------------

    def to_wire(self) -> dict[str, object]:
        """The compact, versioned form for msgpack (Locust's codec): see the module docstring.

        Buckets are numbered densely (``index_of``) and cut into chunks of
        ``CHUNK``. A chunk with at least ``DENSE_MIN`` occupied buckets goes
        dense: ``o`` lists those chunks' numbers, ``z`` is their counts,
        ``CHUNK`` per chunk, as unsigned little-endian integers of ``w``
        bytes (the fewest that hold the largest count, ``m``), deflated. The
        other buckets (tails, and histograms with few samples) go sparse:
        ``sk`` their keys, each as the difference from the previous one,
        ``sn`` their counts. ``c``, ``t``, ``lo``, ``hi`` are count, sum, min
        and max. An empty histogram is ``{"v": 2, "c": 0}``.
        """
        if not self.count:
            return {"v": WIRE_VERSION, "c": 0}
        out: dict[str, object] = {"v": WIRE_VERSION, "c": self.count, "t": self.total, "lo": self.min,
                                  "hi": self.max}
        chunks: dict[int, list[tuple[int, int]]] = {}
        for key, n in self.counts.items():
            if n:
                i = index_of(key)
                chunks.setdefault(i // CHUNK, []).append((i, n))
        dense = sorted(c for c, entries in chunks.items() if len(entries) >= DENSE_MIN)
        if dense:
            top = max(n for c in dense for _, n in chunks[c])
            width = _width_for(top)
            fields = array(_TYPECODES[width], bytes(width * CHUNK * len(dense)))
            for slot, c in enumerate(dense):
                start = slot * CHUNK - c * CHUNK
                for i, n in chunks.pop(c):
                    fields[start + i] = n
            if _BIG_ENDIAN and width > 1:
                fields.byteswap()
            out.update(o=dense, w=width, m=top, z=zlib.compress(fields.tobytes(), 6))
        rest = sorted(e for entries in chunks.values() for e in entries)
        if rest:
            keys = [key_of(i) for i, _ in rest]
            out["sk"] = [keys[0], *(b - a for a, b in pairwise(keys))]
            out["sn"] = [n for _, n in rest]
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> Histogram:
        """Read ``to_wire``'s form; WireError for another version or a malformed one.

        Each dense chunk becomes one big integer of fields twice as wide as
        the wire's (merged with ``merge`` in C, folded into the dict when
        read); the sparse buckets go into the dict.
        """
        version = data.get("v")
        if version != WIRE_VERSION:
            raise WireError(f"histogram wire format version {version!r}, this loadkit reads version "
                            f"{WIRE_VERSION}: run the same loadkit version on the master and every worker")
        hist = cls()
        if not data.get("c"):
            return hist
        try:
            if "z" in data:
                hist._read_dense(data)
            if "sk" in data:
                keys, counts = data["sk"], data["sn"]
                if not isinstance(keys, list) or not isinstance(counts, list) or len(keys) != len(counts):
                    raise WireError("histogram on the wire: its sparse keys and counts do not pair up")
                hist._counts = dict(zip(accumulate(keys), counts, strict=True))
            hist.count = int(data["c"])  # type: ignore[call-overload]
            hist.total = int(data["t"])  # type: ignore[call-overload]
            hist.min = int(data["lo"])  # type: ignore[call-overload]
            hist.max = int(data["hi"])  # type: ignore[call-overload]
        except (KeyError, TypeError, zlib.error) as exc:
            raise WireError(f"histogram on the wire is malformed: {exc!r}") from None
        if not (hist._dense or hist._counts):
            raise WireError(f"histogram on the wire has count {data['c']!r} but no samples in its buckets")
        return hist

    def _read_dense(self, data: Mapping[str, object]) -> None:
        width, chunks, top, packed = data["w"], data["o"], data["m"], data["z"]
        if (width not in (1, 2, 4, 8) or not isinstance(chunks, list) or not isinstance(top, int)
                or not 0 < top < 1 << (8 * width) or not isinstance(packed, bytes)):
            raise WireError(f"histogram on the wire has width {width!r}, chunks {chunks!r}, largest count {top!r}")
        if len(chunks) > MAX_FIELDS // CHUNK or not all(isinstance(c, int) and 0 <= c < MAX_FIELDS // CHUNK
                                                        for c in chunks):
            raise WireError("histogram on the wire has chunks beyond any histogram's buckets")
        inflate = zlib.decompressobj()
        raw: bytes | bytearray = inflate.decompress(packed, len(chunks) * CHUNK * width)
        if inflate.unconsumed_tail or len(raw) != len(chunks) * CHUNK * width:
            raise WireError(f"histogram on the wire: {len(raw)} bytes of counts for {len(chunks)} chunks")
        lane = min(2 * width, 8)
        if lane != width:  # widen every count, byte column by byte column (in C)
            wide = bytearray(len(raw) // width * lane)
            for b in range(width):
                wide[b::lane] = raw[b::width]
            raw = wide
        size = CHUNK * lane
        dense = self._dense
        for k, c in enumerate(chunks):
            value = int.from_bytes(raw[k * size:(k + 1) * size], "little")
            if value:
                dense[c] = value
        self._dense_width = lane
        self._dense_room = (1 << (8 * lane)) - 1 - top

    def _add_dense(self, other: Histogram) -> None:
        """Add ``other``'s dense counts to ours: one big-integer addition per chunk when the fields allow."""
        bound = (1 << (8 * other._dense_width)) - 1 - other._dense_room  # other's largest field, at most
        if self._dense and (self._dense_width != other._dense_width or bound > self._dense_room):
            self._fold()  # would not fit: what we hold goes to the dict first
        if not self._dense:
            self._dense = dict(other._dense)
            self._dense_width, self._dense_room = other._dense_width, other._dense_room
            return
        mine = self._dense
        for chunk, value in other._dense.items():
            mine[chunk] = mine.get(chunk, 0) + value
        self._dense_room -= bound

    def _fold(self) -> None:
        """Move the counts kept as dense ints into the dict."""
        dense, width = self._dense, self._dense_width
        self._dense = {}
        counts = self._counts
        typecode = _TYPECODES[width]
        for chunk, value in dense.items():
            fields = array(typecode)
            fields.frombytes(value.to_bytes(CHUNK * width, "little"))
            if _BIG_ENDIAN and width > 1:
                fields.byteswap()
            base = chunk * CHUNK
            for i, c in zip(compress(range(base, base + CHUNK), fields), compress(fields, fields), strict=True):
                key = key_of(i)
                counts[key] = counts.get(key, 0) + c

    def __bool__(self) -> bool:  # an empty histogram is falsy, like a container
        return self.count > 0

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max})"


def _width_for(count: int) -> int:
    """The fewest bytes (1, 2, 4 or 8) an unsigned ``count`` fits in."""
    return 1 if count < 1 << 8 else 2 if count < 1 << 16 else 4 if count < 1 << 32 else 8


def _ms(value_us: int | None) -> float | None:
    return None if value_us is None else round(value_us / 1000.0, 3)
