"""The harness's account of itself: its own waits and its generator lag. Pure.

Why a section of its own: a busy event loop delays every timer and every
read, so each latency the harness measures grows by its own lag, long
before a CPU average reaches 90 % (one greenlet holding the loop for 200 ms
a second is 20 % CPU). The lag is measured directly: each guest's timer
wake-ups (and a probe per process, so an idle run is measured too) are
compared with when they were due, into a microsecond histogram. A run
whose lag p99 is above ``--lag-limit`` is ``invalid``: the harness, not the
target, was slow. The token call's wait inside the harness (a free
connection, the resolver) is kept apart from the token latency likewise.
"""

from __future__ import annotations

from typing import Any

from loadkit.metrics.recorder import HARNESS_LAG, HARNESS_WAIT, Recorder

#: Default ``--lag-limit``: generator lag p99 (ms) above which a run is invalid.
#: Lag adds to every latency the harness measures; at 100 ms it is a third of
#: a typical ``auth.p95 < 300`` gate and the figures describe the harness.
#: A healthy process's lag p99 is a few milliseconds.
DEFAULT_LAG_LIMIT_MS = 100.0
#: Fewer lag samples than this and the check says "not measured" (and passes).
MIN_LAG_SAMPLES = 20


def harness_section(rec: Recorder, lag_limit_ms: float | None = None) -> dict[str, Any]:
    """``report["harness"]`` (and a series row's): the waits and the lag, in milliseconds."""
    wait = rec.latency.get(HARNESS_WAIT)
    lag = rec.latency.get(HARNESS_LAG)
    out: dict[str, Any] = {
        "wait_ms": wait.summary_ms((50, 95, 99)) if wait else {"count": 0},
        "lag_ms": lag.summary_ms((50, 95, 99)) if lag else {"count": 0},
        #: answers read once the run was stopping, by phase: counted, not timed
        "untimed_at_stop": {phase: n for phase, n in sorted(rec.untimed.items()) if n},
    }
    if lag_limit_ms is not None:
        out["lag_limit_ms"] = float(lag_limit_ms)
    return out


def lag_check(harness: dict[str, Any]) -> dict[str, Any] | None:
    """The ``lag`` validity check of a report's harness section (None without a limit)."""
    limit = harness.get("lag_limit_ms")
    if limit is None:
        return None
    lag = harness.get("lag_ms") or {}
    count = lag.get("count") or 0
    p99 = lag.get("p99")
    if count < MIN_LAG_SAMPLES or p99 is None:
        return {"name": "lag", "ok": True, "fails_as": "invalid",
                "detail": f"generator lag not measured ({count} timer wake-ups)"}
    ok = p99 <= limit
    return {"name": "lag", "ok": ok, "fails_as": "invalid",
            "detail": f"generator lag p99 {p99:g} ms {'within' if ok else 'ABOVE'} the limit of {limit:g} ms "
                      f"(max {lag.get('max')} ms over {count} timer wake-ups)"
                      + ("" if ok else ": the harness was too busy to keep time; its latencies are its own")}
