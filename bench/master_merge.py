"""What a Locust master pays per worker report: ``python bench/master_merge.py [--workers 1000]``.

A simulation, no sockets: synthetic workers' 3-second deltas, built with
realistic figures (every lifecycle phase's histogram full, close codes,
outcomes by phase, survival, errors), go through exactly the code a real
run uses: ``Recorder.detach().to_wire()`` and Locust's own statistics on the
worker (``report_to_master``), Locust's msgpack codec both ways, and on the
master Locust's ``worker_report`` statistics merge plus loadkit's
``Ledger.receive`` (decode and merge into the run's total and the current
window). Once per series window the master reads every window histogram
(``close_window``): that cost is spread over the reports of the window.

The baseline in the same run is the previous wire form (version 1: bucket
keys and counts as two msgpack lists, merged bucket by bucket), reproduced
here so the ratio is measured, not remembered.

The budget: N workers reporting every 3 s send N/3 reports a second; the
master's share of one core is that rate times the CPU per report. The
issue's target is 1,000 workers within 25 % of a core (750 µs a report, all
of it: Locust's part, msgpack, loadkit's part) and reports of at most 16 KB.

Figures are CPU time (``time.process_time``) of this process, best of a few
repeats: on a shared machine the minimum is the least disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from locust.event import Events  # noqa: E402
from locust.stats import RequestStats, setup_distributed_stats_event_listeners  # noqa: E402

from loadkit.lifecycle import Outcome, Phase, Result  # noqa: E402
from loadkit.locust.ledger import Ledger  # noqa: E402
from loadkit.metrics.histogram import Histogram  # noqa: E402
from loadkit.metrics.recorder import Recorder  # noqa: E402

REPORT_EVERY_S = 3.0
SERIES_WINDOW_S = 10.0  # --series-interval's default
BUDGET_SHARE = 0.25
BUDGET_BYTES = 16 * 1024

#: One worker's 3 s at the guests-per-worker figure of docs/capacity.md
#: (4,400 guests, default timings: 0.26 messages and 0.046 new sessions per
#: guest and second, a ping every 20 s, agent replies after 0.5–2 s). Each
#: phase: (samples per report, a draw in µs). Log-normal spreads are those
#: of a loaded gateway (p99 about 6× the median), wider than loopback's.
PROFILES: dict[str, dict[str, tuple[int, Callable[[random.Random], float]]]] = {
    "chatty worker (4,400 guests)": {
        "token": (600, lambda r: r.lognormvariate(8.5, 0.8)),      # ~5 ms
        "connect": (600, lambda r: r.lognormvariate(7.6, 0.8)),    # ~2 ms
        "auth": (600, lambda r: r.lognormvariate(8.0, 0.8)),       # ~3 ms
        "message": (3400, lambda r: r.lognormvariate(7.3, 0.8)),   # ~1.5 ms
        "ping": (660, lambda r: r.lognormvariate(7.2, 0.8)),
        "reply": (3400, lambda r: r.uniform(500_000, 2_000_000) + r.lognormvariate(7.3, 0.8)),
        "harness_wait": (600, lambda r: r.lognormvariate(4.5, 1.0)),  # the token call's wait inside the harness
        # generator lag: every guest's timer wake-up (messages, pings) and the 20 ms probe
        "harness_lag": (4200, lambda r: r.lognormvariate(6.0, 1.2)),
        "recover": (20, lambda r: r.lognormvariate(12, 1.0)),
        "silence": (5, lambda r: r.uniform(20e6, 60e6)),
    },
    # A remote gateway: ten times the latency and twice the spread; every
    # histogram spans more buckets (the worst case for the report's size).
    "remote gateway, wide spread": {
        "token": (600, lambda r: r.lognormvariate(11, 1.6)),
        "connect": (600, lambda r: r.lognormvariate(10.5, 1.6)),
        "auth": (600, lambda r: r.lognormvariate(10.8, 1.6)),
        "message": (3400, lambda r: r.lognormvariate(10.5, 1.6)),
        "ping": (660, lambda r: r.lognormvariate(10.4, 1.6)),
        "reply": (3400, lambda r: r.uniform(1e6, 30e6) + r.lognormvariate(10.5, 1.6)),
        "harness_wait": (600, lambda r: r.lognormvariate(4.5, 1.5)),
        "harness_lag": (4200, lambda r: r.lognormvariate(6.0, 1.5)),
        "recover": (20, lambda r: r.lognormvariate(13, 1.5)),
        "silence": (5, lambda r: r.uniform(20e6, 60e6)),
    },
}

_OUTCOMES = [  # (outcome, phase, close) and weight
    ((Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED, (1000, "", "client")), 520),
    ((Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED, (1012, "service restart", "server")), 20),
    ((Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED, (1011, "internal error", "server")), 5),
    ((Outcome.DROPPED_BY_SERVER, Phase.JUST_AFTER_AUTH, (1001, "idle timeout", "server")), 3),
    ((Outcome.AUTH_REFUSED, Phase.DURING_AUTH, (4001, "unauthorized", "server")), 12),
    ((Outcome.AUTH_TIMEOUT, Phase.DURING_AUTH, (4008, "auth timeout", "server")), 4),
    ((Outcome.TOKEN_REFUSED, Phase.TOKEN, None), 10),
    ((Outcome.CONNECT_FAILED, Phase.BEFORE_OPEN, None), 3),
    ((Outcome.CONNECTION_LOST, Phase.ESTABLISHED, (1006, "", "none")), 10),
    ((Outcome.STOPPED_BY_HARNESS, Phase.ESTABLISHED, (1000, "", "client")), 13),
]


def worker_delta(rng: random.Random, profile: dict[str, tuple[int, Callable[[random.Random], float]]],
                 stats: RequestStats) -> Recorder:
    """One worker's 3 s: a Recorder and Locust's request statistics, fed alike."""
    rec = Recorder()
    for phase, (n, draw) in profile.items():
        hist = rec.latency[phase] if phase in rec.latency else getattr(rec, phase)
        for _ in range(n):
            value = int(draw(rng))
            hist.record(value)
            if phase in ("token", "connect", "auth", "message", "ping", "reply"):
                stats.log_request("WS", phase, value / 1000.0, 64)
    kinds = [k for k, _ in _OUTCOMES]
    weights = [w for _, w in _OUTCOMES]
    for outcome, phase, close in rng.choices(kinds, weights, k=600):
        rec.session_started()
        authenticated = phase in (Phase.ESTABLISHED, Phase.JUST_AFTER_AUTH)
        if authenticated:
            rec.session_authenticated()
        rec.session_ended(Result(outcome, phase, authenticated), rng.uniform(1, 4000) if authenticated else 0.0,
                          close)
    rec.errors.update({"4029": rng.randrange(5), "4003": rng.randrange(3)})
    rec.bad_frames.update({("not_json", "established"): rng.randrange(1, 3), ("unknown_type", "during_auth"): 1})
    rec.bad_sessions = 2
    rec.messages_sent, rec.messages_answered, rec.agent_messages = 3400, 3398, 3400
    rec.reconnect_attempts, rec.reconnect_successes, rec.missed_pongs = 20, 18, 3
    return rec


# -- the previous wire form (version 1), the baseline -------------------------------


def v1_hist_to_wire(h: Histogram) -> dict[str, object]:
    keys = list(h.counts)
    return {"k": keys, "n": [h.counts[k] for k in keys], "t": h.total, "lo": h.min, "hi": h.max}


def v1_hist_from_wire(data: dict[str, Any]) -> Histogram:
    hist = Histogram()
    hist.counts = {int(k): int(n) for k, n in zip(data["k"], data["n"], strict=True)}
    hist.count = sum(hist.counts.values())
    hist.total, hist.min, hist.max = int(data["t"]), data["lo"], data["hi"]
    return hist


def v1_to_wire(rec: Recorder) -> dict[str, Any]:
    """Every field as version 1 shipped it: histograms as bucket lists, Counters as rows."""
    out: dict[str, Any] = {"marks": list(rec.marks)}
    for name in Recorder.__slots__:
        value = getattr(rec, name)
        if name == "marks" or not value:
            continue
        if isinstance(value, Histogram):
            out[name] = v1_hist_to_wire(value)
        elif isinstance(value, Counter):
            out[name] = [[*k, n] if isinstance(k, tuple) else [k, n] for k, n in value.items()]
        elif isinstance(value, dict):
            out[name] = {k: v1_hist_to_wire(h) for k, h in value.items() if h}
        else:
            out[name] = value
    return out


def v1_from_wire(data: dict[str, Any]) -> Recorder:
    rec = Recorder(data["marks"])
    for name, value in data.items():
        if name == "marks":
            continue
        mine = getattr(rec, name)
        if isinstance(mine, Histogram):
            setattr(rec, name, v1_hist_from_wire(value))
        elif isinstance(mine, Counter):
            setattr(rec, name, Counter({(tuple(row[:-1]) if len(row) > 2 else row[0]): row[-1] for row in value}))
        elif isinstance(mine, dict):
            for k, h in value.items():
                mine[k] = v1_hist_from_wire(h)
        elif isinstance(mine, list):
            setattr(rec, name, list(value))
        else:
            setattr(rec, name, type(mine)(value))
    return rec


class V1Recorder(Recorder):
    """The master's merge as it was: histograms bucket by bucket (the same dict loop)."""

    __slots__ = ()

    @classmethod
    def from_wire(cls, data: Any) -> Recorder:  # type: ignore[override]
        return v1_from_wire(data)


# -- the master's side --------------------------------------------------------------


class MasterRuntime:
    """The plugin Runtime's parts the Ledger uses (as in tests/test_distributed.py)."""

    def __init__(self) -> None:
        self.total, self.window = Recorder(), Recorder()
        self.worker_open: dict[str, int] = {}
        self.lost_workers: set[str] = set()
        self.left_workers: dict[str, str] = {}

    def absorb(self, delta: Recorder) -> None:
        self.total.merge(delta)
        self.window.merge(delta)


#: worker CPU µs per report spent in the encoding (to_wire and msgpack), by codec
ENCODE_US: dict[str, float] = {}


def make_reports(profile_name: str, n: int, codec: str, seed: int = 1) -> list[bytes]:
    """``n`` distinct workers' report messages, msgpack-encoded as Locust sends them."""
    rng = random.Random(seed)
    out = []
    spent = 0.0
    for i in range(n):
        events = Events()
        stats = RequestStats()
        setup_distributed_stats_event_listeners(events, stats)
        rec = worker_delta(rng, PROFILES[profile_name], stats)
        data: dict[str, Any] = {}
        events.report_to_master.fire(client_id=f"w{i}", data=data)
        t0 = time.process_time()
        delta = rec.detach()
        wire = v1_to_wire(delta) if codec == "v1" else delta.to_wire()
        data["loadkit"] = {"delta": wire, "open": 4400, "in_run": True, "pid": 1000 + i, "hostname": "sim"}
        data["user_count"], data["user_classes_count"] = 4400, {"GuestUser": 4400}
        out.append(msgpack.packb({"type": "stats", "data": data, "node_id": f"w{i}"}, use_bin_type=True))
        spent += time.process_time() - t0
    ENCODE_US[codec] = spent / n * 1e6
    return out


def one_pass(reports: list[bytes], codec: str, best: dict[str, float]) -> None:
    """Feed every report to a fresh master once; keep the figures of the cheapest pass in ``best``.

    CPU µs per report on the master: msgpack, Locust's statistics, loadkit's
    part; and the ms of one series window's read of the merged window.
    """
    from loadkit.locust import ledger as distributed

    events = Events()
    stats = RequestStats()
    setup_distributed_stats_event_listeners(events, stats)
    rt = MasterRuntime()
    ledger = Ledger(rt)
    ledger.new_run(f"w{i}" for i in range(len(reports)))
    saved = distributed.Recorder
    if codec == "v1":
        distributed.Recorder = V1Recorder  # type: ignore[misc]
    try:
        t_unpack = t_locust = t_loadkit = 0.0
        for raw in reports:
            t0 = time.process_time()
            msg = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            t1 = time.process_time()
            events.worker_report.fire(client_id=msg["node_id"], data=msg["data"])
            t2 = time.process_time()
            ledger.receive(msg["node_id"], msg["data"]["loadkit"])
            t3 = time.process_time()
            t_unpack += t1 - t0
            t_locust += t2 - t1
            t_loadkit += t3 - t2
        # one series window's read of the merged window (what close_window does)
        t0 = time.process_time()
        for hist in rt.window.latency.values():
            hist.summary_ms((50, 95, 99))
        rt.window.outcomes()
        t_window = time.process_time() - t0
    finally:
        distributed.Recorder = saved  # type: ignore[misc]
    n = len(reports)
    got = {"msgpack": t_unpack / n * 1e6, "locust": t_locust / n * 1e6, "loadkit": t_loadkit / n * 1e6,
           "window_read_ms": t_window * 1e3}
    got["per_report_us"] = got["msgpack"] + got["locust"] + got["loadkit"]
    if not best or got["per_report_us"] < best["per_report_us"]:
        best.update(got)


def run(workers: int, sample: int, repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    print(f"master merge cost: {workers:,} workers reporting every {REPORT_EVERY_S:g} s "
          f"({workers / REPORT_EVERY_S:,.0f} reports/s); budget {BUDGET_SHARE:.0%} of a core, "
          f"{BUDGET_BYTES // 1024} KB a report")
    print(f"({sample} distinct synthetic workers' reports per profile, best CPU of {repeats} interleaved "
          "repeats; v1 = the previous wire form, measured in this run)")
    print("load average at the start: {:.1f} {:.1f} {:.1f} on {} cores (CPU time per operation grows with "
          "contention: trust the ratios)\n".format(*os.getloadavg(), os.cpu_count()))
    for profile in PROFILES:
        row: dict[str, Any] = {}
        reports: dict[str, list[bytes]] = {}
        encode: dict[str, float] = {}
        for codec in ("v1", "v2"):
            reports[codec] = make_reports(profile, sample, codec)
            encode[codec] = ENCODE_US[codec]
        costs: dict[str, dict[str, float]] = {"v1": {}, "v2": {}}
        for _ in range(repeats):  # interleaved, so a busy spell of the machine hits both
            for codec in ("v1", "v2"):
                one_pass(reports[codec], codec, costs[codec])
        for codec in ("v1", "v2"):
            cost = costs[codec]
            size = sum(map(len, reports[codec])) / len(reports[codec])
            rate = workers / REPORT_EVERY_S
            windows_per_s = 1.0 / SERIES_WINDOW_S
            per_report = cost["per_report_us"]
            # the window read, scaled from `sample` workers' merge to `workers` workers' merge is
            # bounded by the number of buckets, not of workers: count it as measured
            share = (rate * per_report + windows_per_s * cost["window_read_ms"] * 1e3) / 1e6
            row[codec] = {**cost, "bytes": size, "core_share": share, "encode_us": encode[codec]}
        results[profile] = row
        v1, v2 = row["v1"], row["v2"]
        print(f"{profile}")
        print(f"  {'':34}{'v1 (before)':>14}{'v2 (now)':>14}{'v2:v1':>8}")
        lines = [
            ("bytes per report (msgpack)", "bytes", "{:,.0f}"),
            ("worker µs per report: encode", "encode_us", "{:,.0f}"),
            ("master µs per report: msgpack", "msgpack", "{:,.0f}"),
            ("  Locust's own statistics", "locust", "{:,.0f}"),
            ("  loadkit: decode and merge", "loadkit", "{:,.0f}"),
            ("  all", "per_report_us", "{:,.0f}"),
            ("window read (every 10 s), ms", "window_read_ms", "{:,.2f}"),
            (f"master core share at {workers:,} workers", "core_share", "{:.1%}"),
        ]
        for label, key, fmt in lines:
            ratio = v2[key] / v1[key] if v1[key] else float("nan")
            print(f"  {label:34}{fmt.format(v1[key]):>14}{fmt.format(v2[key]):>14}{ratio:>8.2f}")
        fits = v2["core_share"] <= BUDGET_SHARE and v2["bytes"] <= BUDGET_BYTES
        most = BUDGET_SHARE * 1e6 * REPORT_EVERY_S / v2["per_report_us"]
        print(f"  {'MET' if fits else 'MISSED':6} {workers:,} workers in {v2['core_share']:.1%} of a core "
              f"(goal <= {BUDGET_SHARE:.0%}), {v2['bytes'] / 1024:.1f} KB a report (goal <= 16 KB); "
              f"the budget holds about {most:,.0f} such workers\n")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=1000, help="workers the budget is computed for")
    ap.add_argument("--sample", type=int, default=60, help="distinct synthetic reports per profile")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    results = run(args.workers, args.sample, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
