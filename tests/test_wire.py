"""The worker → master wire form (loadkit.metrics.wire): exact merges, refusals, the size bound.

The master's path is what is checked: a report through Locust's msgpack
options both ways, decoded into packed histograms, merged into the open
window, the window into the closed ones (``Figures``), read back. The
oracle is plain arithmetic: the merged totals equal the sum of the parts.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadkit.locust.aggregation import Figures
from loadkit.locust.ledger import Ledger
from loadkit.metrics.histogram import CHUNK, Histogram, index_of, key_of
from loadkit.metrics.recorder import DEFAULT_SURVIVAL_MARKS, Recorder
from loadkit.metrics.wire import HEADER_LEN, WIRE_VERSION, Packer, Unpacker, WireError
from loadkit.session import LiveSessions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from report_profiles import PROFILES, WIDE, worker_delta  # noqa: E402

from tests.test_histogram import DISTRIBUTIONS, assert_same_histogram, fed  # noqa: E402
from tests.test_recorder import random_ops, snapshot  # noqa: E402

#: The issue's bound for one worker report, all of it (Locust's statistics and loadkit's part)
REPORT_BOUND = 16 * 1024
#: Locust's own part of a wide report (its RequestStats, response times by rounded ms), as
#: bench/master_merge.py measures it: about 5.9 KB. Not ours to shrink; ours must leave room for it.
LOCUST_PART = 6 * 1024
#: a histogram's header, by name (loadkit.metrics.wire)
HEADER = ["count", "total", "lo", "hi", "offset", "runs", "top", "sparse", "sparse_width"]
RUNS, TOP, SPARSE = HEADER.index("runs"), HEADER.index("top"), HEADER.index("sparse")
assert len(HEADER) == HEADER_LEN


def locust_wire(data: Any) -> Any:
    """What the master receives: Locust's msgpack options both ways."""
    return msgpack.unpackb(msgpack.packb(data, use_bin_type=True), raw=False, strict_map_key=False)


def through_wire(hist: Histogram) -> Histogram:
    """One histogram as a report carries it, read back on the master."""
    packer = Packer()
    report = locust_wire(packer.seal({"h": packer.pack(hist)}))
    reader = Unpacker(report)
    return reader.histogram(reader.fields["h"])


def master() -> Figures:
    fig = Figures(DEFAULT_SURVIVAL_MARKS, Recorder(), LiveSessions(), is_master=True)
    fig.restart(DEFAULT_SURVIVAL_MARKS)
    return fig


# -- histograms --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty", *DISTRIBUTIONS])
def test_a_histogram_through_the_wire_is_the_same_histogram(name: str) -> None:
    samples = [] if name == "empty" else DISTRIBUTIONS[name](random.Random(name), 3000)
    hist = fed(samples)
    back = through_wire(hist)
    assert_same_histogram(back, hist)
    assert_same_histogram(through_wire(hist), hist)  # reading the packed form left it as it was


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.integers(0, 3000), st.integers(0, 2**40), st.sampled_from([1500, 1501])),
                         max_size=400), min_size=1, max_size=8),
       st.integers(0, 7))
def test_histograms_merged_from_the_wire_add_up_exactly(parts: list[list[int]], read_after: int) -> None:
    want, got = Histogram(), Histogram()
    for i, samples in enumerate(parts):
        want.merge(fed(samples))
        got.merge(through_wire(fed(samples)))
        if i == read_after:  # a read in between folds what is packed; merges go on adding
            got.percentile(50)
        got.record(7)
        want.record(7)
    assert_same_histogram(got, want)


def test_counts_that_would_overflow_a_field_spill_or_fold_first_and_stay_exact() -> None:
    # one dense run with counts up to 15 (four bits on the wire): the master's 8-bit fields
    # must spill after 17 such reports, its 16-bit ones fold after 4,369
    busy = fed([v for v in range(1100, 1140) for _ in range(15)] + list(range(1140, 1160)) + [1200] * 300)
    packer = Packer()
    head = packer.pack(busy)
    assert head[RUNS] == 1 and head[TOP] == 15 and head[SPARSE] == 1  # 300 samples in one bucket go sparse
    reader = Unpacker(locust_wire(packer.seal({"h": head})))
    plan = reader.check(reader.fields["h"])
    got, n = Histogram(), 5000
    for i in range(n):
        reader.merge(got, plan)
        if i in (10, 4400):  # a read in between folds; merges go on adding
            got.percentile(50)
    assert got.counts == {key: c * n for key, c in busy.counts.items()}
    assert (got.count, got.total, got.min, got.max) == (busy.count * n, busy.total * n, busy.min, busy.max)
    parts = []  # packed accumulators added together (a window into the closed windows), unread
    for k in (30, 20, 4000):
        part = Histogram()
        for _ in range(k):
            reader.merge(part, plan)
        parts.append(part)
    whole = Histogram()
    for part in parts:
        whole.merge(part)
    assert whole.counts == {key: c * 4050 for key, c in busy.counts.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.integers(0, 40), min_size=1, max_size=7), st.integers(1, 15), st.integers(1, 60),
       st.integers(0, 60), st.randoms(use_true_random=False))
def test_dense_runs_consecutive_or_not_add_up_exactly(runs: set[int], most: int, reports: int, cut: int,
                                                      rng: random.Random) -> None:
    # the master adds each stretch of consecutive runs whole and cuts it into runs when it
    # spills (after 255 // most reports): runs with gaps between them, spills, and two
    # packed accumulators added together must all give the plain sum
    counts = {key_of(r * CHUNK + i): rng.randint(1, most) for r in runs for i in rng.sample(range(CHUNK), 20)}
    hist = fed([key for key, n in counts.items() for _ in range(n)])
    packer = Packer()
    head = packer.pack(hist)
    assert head[RUNS] == len(runs) and head[SPARSE] == 0
    reader = Unpacker(locust_wire(packer.seal({"h": head})))
    plan = reader.check(reader.fields["h"])
    first, second = Histogram(), Histogram()
    for i in range(reports):
        reader.merge(first if i < cut else second, plan)
    first.merge(second)
    assert first.counts == {key: n * reports for key, n in counts.items()}
    assert (first.count, first.total) == (hist.count * reports, hist.total * reports)


def test_busy_runs_go_dense_and_outliers_and_small_histograms_sparse() -> None:
    packer = Packer()
    few = packer.pack(fed([100, 5_000, 2_000_000]))
    assert few[RUNS] == 0 and few[SPARSE] == 3  # no dense run, three sparse buckets
    rng = random.Random(2)
    busy = fed([rng.randrange(1000, 1400) for _ in range(2000)] + [40_000_000] + [1200] * 20)
    head = packer.pack(busy)
    assert head[RUNS] == len({index_of(v) // CHUNK for v in range(1000, 1400)})
    assert head[SPARSE] == 2  # the outlier, and a count too large for a run's four bits
    assert 0 < head[TOP] < 16


# -- recorders, and the master's figures -------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 2**32), min_size=1, max_size=6), st.integers(0, 5))
def test_the_masters_total_is_the_sum_of_the_workers_reports(seeds: list[int], close_after: int) -> None:
    fig = master()
    whole = Recorder()
    for i, seed in enumerate(seeds):
        delta = Recorder()
        for op in random_ops(random.Random(seed), 300):
            op(delta)
        whole.merge(delta)
        fig.absorb(Recorder.from_wire(locust_wire(delta.to_wire())))
        if i == close_after:  # a series window closes: its figures go to the closed ones
            fig.close_window()
    assert snapshot(fig.total) == snapshot(whole)
    assert snapshot(fig.total) == snapshot(whole)  # reading the total changes nothing


@pytest.mark.parametrize("profile", PROFILES)
def test_realistic_reports_merged_on_the_master_equal_the_sum_of_the_parts(profile: str) -> None:
    fig, whole = master(), Recorder()
    for seed in range(3):
        delta = worker_delta(random.Random(seed), profile)
        whole.merge(delta)
        fig.absorb(Recorder.from_wire(locust_wire(delta.to_wire())))
    fig.close_window()
    delta = worker_delta(random.Random(9), profile)
    whole.merge(delta)
    fig.absorb(Recorder.from_wire(locust_wire(delta.to_wire())))
    assert snapshot(fig.total) == snapshot(whole)


def test_a_write_off_taken_back_after_its_window_closed_leaves_the_total_exact() -> None:
    fig = master()
    ledger = Ledger(fig)
    ledger.new_run(["a", "b"])
    rec = Recorder()
    for _ in range(4):
        rec.session_started()
    ledger.receive("a", {"delta": rec.to_wire(), "open": 4, "in_run": True})
    ledger.write_off("a", "it stopped sending heartbeats")
    assert fig.total.ended[("lost_with_worker", "unknown")] == 4
    fig.close_window()
    ledger.receive("a", {"delta": Recorder().to_wire(), "open": 4, "in_run": True})
    assert ("lost_with_worker", "unknown") not in fig.total.ended and fig.total.started == 4
    assert ledger.take_revived() == 4


def test_the_wide_profiles_report_leaves_room_for_locusts_part_within_16_kb() -> None:
    for seed in range(3):
        report = {"delta": worker_delta(random.Random(seed), WIDE).to_wire(), "open": 4400, "in_run": True,
                  "pid": 12345, "hostname": "a-worker-host"}
        size = len(msgpack.packb(report, use_bin_type=True))
        assert size + LOCUST_PART <= REPORT_BOUND, size


# -- versions and malformed reports ------------------------------------------------------


def test_a_report_of_another_version_is_refused_saying_what_to_do() -> None:
    rec = Recorder()
    rec.observe("auth", 1200)
    wire = rec.to_wire()
    v2 = {"v": 2, "marks": [60], "started": 1, "latency": {"auth": {"v": 2, "c": 1, "sk": [1200], "sn": [1]}}}
    unversioned = {k: v for k, v in wire.items() if k != "v"}
    for data, version in ((unversioned, 1), (v2, 2), ({**wire, "v": 3}, 3), ({**wire, "v": 5}, 5)):
        with pytest.raises(WireError, match=f"version {version}, this loadkit reads version {WIRE_VERSION}: "
                                            "run the same loadkit version on the master and every worker"):
            Recorder.from_wire(data)


def deflated(data: bytes) -> bytes:
    """A report's part as the wire has it (a zstd frame that says its size)."""
    return zstandard.ZstdCompressor(write_content_size=True).compress(data)


def test_a_malformed_report_is_refused_not_half_merged() -> None:
    rng = random.Random(4)
    hist = fed([rng.randrange(1000, 1600) for _ in range(800)] + [3_000_000])
    packer = Packer()
    head = packer.pack(hist)
    good = packer.seal({"h": head})
    assert head[RUNS] and head[SPARSE]  # a dense run and a sparse outlier
    area = len(Unpacker(good).area)

    def with_head(**changes: int) -> Any:
        return [changes.get(n, v) for n, v in zip(HEADER, head, strict=True)]

    fields = deflated(msgpack.packb({"h": head}))
    for data, why in (({**good, "m": b"not deflated"}, "malformed"), ({**good, "m": fields[:5]}, "truncated"),
                      ({**good, "z": None}, "not bytes"), ({"v": WIRE_VERSION}, "not bytes"),
                      ({**good, "m": deflated(b"\xc1")}, "fields are malformed"),
                      ({**good, "m": deflated(msgpack.packb([1, 2]))}, "not a map"),
                      ({**good, "z": zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * 99)},
                       "unknown size")):
        with pytest.raises(WireError, match=why):
            Unpacker(data)
    reader = Unpacker(good)
    for bad, why in ((with_head(top=16), "largest count 16"), (with_head(top=0), "largest count 0"),
                     (with_head(runs=area), "do not fit"), (with_head(sparse=area), "do not fit"),
                     (with_head(sparse_width=3), "width 3"), (head[:4], "9 non-negative"),
                     (with_head(runs=0, sparse=0), "no samples"), (with_head(total=-1), "9 non-negative")):
        with pytest.raises(WireError, match=why):
            reader.check(bad)
    rec = Recorder()
    rec.observe("auth", 5)
    reader = Unpacker(rec.to_wire())
    for name, value, why in (("frobs", 1, "field 'frobs'"), ("ended", 7, "malformed"),
                             ("ended", [[["a", "b"], "x"]], "not an integer"), ("started", "7", "not a number"),
                             ("latency", {"auth": [1, 2]}, "9 non-negative")):
        packer = Packer()
        packer.area = bytearray(reader.area)
        window = Recorder()
        with pytest.raises(WireError, match=why):
            window.merge_wire(Recorder.read_wire(packer.seal({**reader.fields, name: value})))
        assert window.is_empty()  # refused whole: nothing of it was merged
