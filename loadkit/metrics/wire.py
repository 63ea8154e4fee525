"""The worker → master wire form of a report's histograms and fields (version ``WIRE_VERSION``). Pure.

Why a form of our own: a Locust master of 1,000 workers receives about 300
worker reports a second, each with a dozen histograms of a few thousand
occupied buckets. Sent as lists of keys and counts they were 40-55 KB a
report and cost the master milliseconds each to decode and merge; the issue
asks for at most 16 KB a report and well under a millisecond, all of it.

A report is ``{"v": 4, "m": bytes, "z": bytes}`` (``Packer`` writes it,
``Unpacker`` reads it). ``m`` is the report's fields as msgpack, compressed
with zstd (close reasons and failure details repeat, within a report and across its
tables); to Locust's own msgpack the whole report is two ``bytes`` objects,
which cost it nothing to decode. In the fields a histogram is its header,
nine integers ``[count, sum, min, max, offset, runs, top, sparse,
sparse_width]`` (count, sum, min and max exact), and its buckets lie at
``offset`` in the byte area ``z`` (zstd, level ``ZSTD_LEVEL``). Why zstd
and not zlib (version 3): the master's inflate cost goes by the bytes it
writes, and a report's area is 20-35 KB of four-bit counts, mostly zeros
between the counts; zlib took 150-250 µs a report to inflate it, zstd a
third of that or less, for the same size (bench/master_merge.py):

- ``runs`` run numbers, one byte each (a run is ``CHUNK`` consecutive
  buckets by dense number, ``index_of``), then each run's counts as four-bit
  fields, two to a byte, low half first; ``top`` is the largest. A run goes
  dense when at least ``DENSE_MIN`` of its buckets hold a count below
  ``RUN_COUNT_LIMIT``; larger counts, tails and small histograms go sparse.
- ``sparse`` bucket numbers (two bytes each, each the difference from the
  previous one), then their counts (``sparse_width`` bytes each).

The master adds a dense run with one ``from_bytes`` and a few C operations
(``Histogram.add_runs``), so its cost per report is a few C calls per run,
not a Python step per bucket. A report is checked whole before any of it is
merged (``Unpacker.check``, then ``merge``): another version, or a
malformed report, is refused with ``WireError`` saying what to do, and a
master and workers of different loadkit versions never mis-merge in silence.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from itertools import accumulate, pairwise
from typing import Any, NamedTuple

import msgpack
import zstandard

from loadkit.metrics.histogram import (
    BIG_ENDIAN,
    CHUNK,
    MAX_FIELDS,
    RUN_COUNT_LIMIT,
    TYPECODES,
    Histogram,
    index_of,
)

__all__ = ["DENSE_MIN", "WIRE_VERSION", "Packer", "Plan", "Unpacker", "WireError"]

#: The version of the wire form; a receiver refuses any other. 1: keys and
#: counts as msgpack lists; 2: a deflated stream per histogram, byte counts;
#: 3: this form, deflated.
WIRE_VERSION = 4
#: zstd's level for a report's parts: 9 inflates fastest of those tried (1-9) and
#: is the smallest; it costs a worker 1-2 ms a report, every 3 s.
ZSTD_LEVEL = 9
#: A run with fewer occupied buckets than this goes sparse: a sparse bucket
#: costs the master about as much as ``CHUNK / DENSE_MIN`` dense ones
#: (measured with bench/master_merge.py).
DENSE_MIN = 16
#: Runs there can be (run numbers fit in one byte).
MAX_RUNS = -(-MAX_FIELDS // CHUNK)
assert MAX_RUNS <= 256 and MAX_FIELDS < 1 << 16
#: A report's parts, inflated, are never larger than this (a malformed one is refused).
MAX_INFLATED = 64 << 20
HEADER_LEN = 9


class WireError(ValueError):
    """A histogram or recorder on the wire that this loadkit cannot read (version or shape)."""


class Plan(NamedTuple):
    """A checked histogram header: what ``Unpacker.merge`` adds."""

    samples: int
    total: int
    lo: int
    hi: int
    #: the dense runs, as stretches of consecutive ones: ``(first run, runs)``
    stretches: list[tuple[int, int]]
    runs_at: int
    top: int
    #: the sparse buckets' numbers as the wire has them: each the step from the previous one
    sparse_steps: array[int]
    sparse_counts: array[int]


def _deflate(data: bytes | bytearray) -> bytes:
    """One zstd frame that says its own size (the receiver checks it before it inflates)."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(bytes(data))


#: The master's one decompressor (a master merges on one thread: gevent's hub).
_INFLATER = zstandard.ZstdDecompressor()


def _inflate(packed: object, what: str) -> bytes:
    if not isinstance(packed, bytes):
        raise WireError(f"{what} on the wire: a part is {type(packed).__name__}, not bytes")
    try:
        size = zstandard.frame_content_size(packed)
        if not 0 <= size <= MAX_INFLATED:  # -1: a frame that does not say its size
            raise WireError(f"{what} on the wire: a part is of unknown size or over {MAX_INFLATED} bytes")
        raw = _INFLATER.decompress(packed)
    except zstandard.ZstdError as exc:
        raise WireError(f"{what} on the wire: a part is malformed or truncated: {exc}") from None
    if len(raw) != size:
        raise WireError(f"{what} on the wire: a part is truncated: {len(raw)} bytes of {size}")
    return raw


class Packer:
    """Writes the histograms of one report into one area (the worker's side)."""

    def __init__(self) -> None:
        self.area = bytearray()

    def pack(self, hist: Histogram) -> list[int]:
        """``hist``'s buckets appended to the area; its header for the report's fields."""
        runs: dict[int, list[tuple[int, int]]] = {}
        for key, n in hist.counts.items():
            if n:
                i = index_of(key)
                runs.setdefault(i // CHUNK, []).append((i, n))
        dense = sorted(r for r, entries in runs.items()
                       if sum(1 for _, n in entries if n < RUN_COUNT_LIMIT) >= DENSE_MIN)
        area = self.area
        offset = len(area)
        rest: list[tuple[int, int]] = []
        top = 0
        if dense:
            fields = bytearray(CHUNK // 2 * len(dense))
            for slot, r in enumerate(dense):
                shift = (slot - r) * CHUNK
                for i, n in runs.pop(r):
                    if n < RUN_COUNT_LIMIT:
                        j = i + shift
                        fields[j >> 1] |= n << (4 * (j & 1))
                        if n > top:
                            top = n
                    else:
                        rest.append((i, n))
            area += bytes(dense)
            area += fields
        rest.extend(e for entries in runs.values() for e in entries)
        rest.sort()
        sparse_width = 0
        if rest:
            numbers = array("H", [rest[0][0], *(b[0] - a[0] for a, b in pairwise(rest))])
            most = max(n for _, n in rest)
            sparse_width = 1 if most < 1 << 8 else 2 if most < 1 << 16 else 4 if most < 1 << 32 else 8
            counts = array(TYPECODES[sparse_width], [n for _, n in rest])
            if BIG_ENDIAN:
                numbers.byteswap()
                counts.byteswap()
            area += numbers.tobytes()
            area += counts.tobytes()
        return [hist.count, hist.total, hist.min or 0, hist.max or 0, offset, len(dense), top, len(rest),
                sparse_width]

    def seal(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The report: ``fields`` (histograms as their headers) and the area, each compressed."""
        return {"v": WIRE_VERSION, "m": _deflate(msgpack.packb(fields, use_bin_type=True)), "z": _deflate(self.area)}


def refuse_version(version: object, what: str) -> WireError:
    return WireError(f"{what} format version {version or 1!r}, this loadkit reads version {WIRE_VERSION}: "
                     "run the same loadkit version on the master and every worker")


def _stretches(runs: memoryview) -> list[tuple[int, int]]:
    """The run numbers as stretches of consecutive ones: ``(first, how many)`` each, in their order."""
    n = len(runs)
    first = runs[0]
    if runs[-1] - first == n - 1 and bytes(runs) == bytes(range(first, first + n)):
        return [(first, n)]  # the usual case: one stretch, checked in C
    out: list[tuple[int, int]] = []
    start, length = first, 0
    for r in runs:
        if r == start + length:
            length += 1
        else:
            out.append((start, length))
            start, length = r, 1
    out.append((start, length))
    return out


class Unpacker:
    """Reads one report (the master's side): two inflates, then C calls per run."""

    def __init__(self, data: Mapping[str, Any], what: str = "worker report") -> None:
        version = data.get("v")
        if version != WIRE_VERSION:
            raise refuse_version(version, what)
        meta = _inflate(data.get("m"), what)
        try:
            fields = msgpack.unpackb(meta, raw=False, strict_map_key=False)
        except ValueError as exc:  # msgpack's errors are ValueErrors
            raise WireError(f"{what} on the wire: its fields are malformed: {exc}") from None
        if not isinstance(fields, dict):
            raise WireError(f"{what} on the wire: its fields are a {type(fields).__name__}, not a map")
        #: the report's fields, histograms as headers (``check`` reads them)
        self.fields: dict[str, Any] = fields
        self.area = memoryview(_inflate(data.get("z"), what))

    def check(self, head: object) -> Plan:
        """The histogram whose header is ``head``, checked against the area; WireError if it does not fit."""
        try:  # a list of non-negative integers: array refuses anything else, in C
            if not isinstance(head, list) or len(head) != HEADER_LEN or min(array("q", head)) < 0:
                raise TypeError
        except (TypeError, OverflowError):
            raise WireError(f"histogram on the wire: a header of {HEADER_LEN} non-negative integers, "
                            f"not {head!r}") from None
        count, total, lo, hi, at, runs, top, sparse, sparse_width = head
        area = self.area
        run_numbers = area[at:at + runs]
        runs_at = at + runs
        if runs:
            at = runs_at + runs * (CHUNK // 2)
            if not 0 < top < RUN_COUNT_LIMIT or at > len(area):
                raise WireError(f"histogram on the wire: {runs} runs (largest count {top!r}) do not fit its area")
            if max(run_numbers) >= MAX_RUNS:
                raise WireError("histogram on the wire has runs beyond any histogram's buckets")
        deltas: array[int] = array("H")
        counts: array[int] = array("B")
        if sparse:
            end = at + sparse * (2 + sparse_width)
            if sparse_width not in TYPECODES or end > len(area):
                raise WireError(f"histogram on the wire: {sparse} sparse buckets of width {sparse_width!r} "
                                "do not fit its area")
            deltas.frombytes(area[at:at + 2 * sparse])
            counts = array(TYPECODES[sparse_width])
            counts.frombytes(area[at + 2 * sparse:end])
            if BIG_ENDIAN:
                deltas.byteswap()
                counts.byteswap()
            if sum(deltas) >= MAX_FIELDS:  # the last bucket's number (in C: no list of them)
                raise WireError("histogram on the wire has buckets beyond any histogram's")
        if count and not (runs or sparse):
            raise WireError(f"histogram on the wire has count {count!r} but no samples in its buckets")
        return Plan(count, total, lo, hi, _stretches(run_numbers) if runs else [], runs_at, top, deltas, counts)

    def merge(self, hist: Histogram, plan: Plan) -> None:
        """Add a checked histogram to ``hist`` (exact)."""
        if not plan.samples:
            return
        if plan.stretches:
            hist.add_runs(self.area, plan.runs_at, plan.stretches, plan.top)
        if plan.sparse_steps:
            hist.add_sparse(accumulate(plan.sparse_steps), plan.sparse_counts)
        hist.add_summary(plan.samples, plan.total, plan.lo, plan.hi)

    def histogram(self, head: object) -> Histogram:
        """The histogram whose header is ``head``, on its own."""
        hist = Histogram()
        self.merge(hist, self.check(head))
        return hist
