"""Checks of loadkit's Locust request batching, run by tests/test_request_stats.py in a subprocess.

(Importing Locust patches the process with gevent: never in the pytest process.)

Timings batched into Locust's statistics give the figures Locust computes from one event per timing.

The reference is Locust itself: the same timings, at the same (fake) wall
clock, fired one by one through ``events.request`` into a second
environment. Every figure of every entry and of the total must agree.
"""

from __future__ import annotations

import random
import sys
import time
import traceback

import locust
from locust.env import Environment
from locust.event import Events

from loadkit.locust import request_stats
from loadkit.locust.request_stats import REQUEST_TYPE, RequestBatcher

FIELDS = ("num_requests", "num_none_requests", "num_failures", "min_response_time", "max_response_time",
          "total_content_length", "last_request_timestamp")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.25

    def __call__(self) -> float:
        return self.now


def environment() -> Environment:
    env = Environment(events=Events(), user_classes=[])
    env.create_local_runner()
    return env


def timings(n: int, seed: int) -> list[tuple[str, float, int, float]]:
    """(name, ms, bytes, seconds to advance the clock): round trips over several seconds, a few slow."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name = rng.choice(("message", "message", "message", "ping", "reply"))
        ms = rng.choice((rng.uniform(0.01, 3.0), rng.uniform(3, 140), rng.uniform(99.4, 100.6),
                         rng.uniform(900, 12_000)))
        out.append((name, ms, rng.randrange(0, 200), rng.choice((0.0, 0.0, 0.001, 0.013, 0.31))))
    return out


def assert_same(a: Environment, b: Environment) -> None:
    keys = set(a.stats.entries) | set(b.stats.entries)
    assert set(a.stats.entries) == set(b.stats.entries), keys
    for got, want in [(a.stats.entries[k], b.stats.entries[k]) for k in sorted(keys)] + [(a.stats.total,
                                                                                             b.stats.total)]:
        for f in FIELDS:
            assert getattr(got, f) == getattr(want, f), (got.name, f)
        assert abs(got.total_response_time - want.total_response_time) <= 1e-9 * want.total_response_time
        assert dict(got.response_times) == dict(want.response_times), got.name
        assert dict(got.num_reqs_per_sec) == dict(want.num_reqs_per_sec), got.name
        assert dict(got.num_fail_per_sec) == dict(want.num_fail_per_sec), got.name
        for p in (0.5, 0.95, 0.99):
            assert got.get_response_time_percentile(p) == want.get_response_time_percentile(p)
    assert {k: e.occurrences for k, e in a.stats.errors.items()} == {k: e.occurrences
                                                                      for k, e in b.stats.errors.items()}


def check_batched_timings_give_locusts_own_figures(seed: int) -> None:
    clock = Clock()
    time.time = clock
    request_stats._time = clock
    batched, fired = environment(), environment()
    batcher = RequestBatcher(batched)
    fire = fired.events.request.fire
    for i, (name, ms, length, step) in enumerate(timings(3000, seed)):
        error = RuntimeError("no ack") if i % 97 == 0 else None  # failures go through as events
        batcher.report(name, ms, error, length)
        fire(request_type=REQUEST_TYPE, name=name, response_time=ms, response_length=length, exception=error,
             context=None)
        if i % 500 == 0:  # a report to the master, the ticker: any hand-over in between changes nothing
            batcher.flush()
        clock.now += step
    batcher.close()
    assert batched.stats.total.num_requests == 3000
    assert_same(batched, fired)


def check_another_request_listener_hears_every_timing() -> None:
    """A plugin's listener (or a test's) sees each timing: batching stops, what was tallied goes first."""
    env = environment()
    batcher = RequestBatcher(env)
    for ms in (1.0, 2.0, 3.0):
        batcher.report("message", ms, None, 10)
    heard: list[float] = []
    env.events.request.add_listener(lambda response_time, **_kw: heard.append(response_time))
    for ms in (4.0, 5.0):
        batcher.report("message", ms, None, 10)
    assert heard == [4.0, 5.0]
    entry = env.stats.entries[("message", REQUEST_TYPE)]
    assert entry.num_requests == 5 and entry.max_response_time == 5.0 and entry.min_response_time == 1.0
    batcher.close()


def check_a_worker_report_carries_every_timing_tallied_before_it() -> None:
    """The plugin's ``flush_all`` (added at import) runs before Locust's own serialisation of the statistics."""
    import loadkit.locust.plugin  # noqa: F401

    from locust.stats import setup_distributed_stats_event_listeners

    events = locust.events
    saved = {name: list(getattr(events, name)._handlers) for name in ("request", "report_to_master")}
    try:
        env = Environment(events=events, user_classes=[])
        env.create_local_runner()
        setup_distributed_stats_event_listeners(events, env.stats)  # what a worker's runner does
        batcher = RequestBatcher(env)
        for ms in (1.0, 2.0, 3.0):
            batcher.report("message", ms, None, 10)
        data: dict = {}
        events.report_to_master.fire(client_id="w", data=data)
        assert data["stats_total"]["num_requests"] == 3
        assert [s["num_requests"] for s in data["stats"] if s["name"] == "message"] == [3]
        batcher.close()
    finally:
        for name, handlers in saved.items():
            getattr(events, name)._handlers[:] = handlers


def check_a_reset_wipes_what_was_tallied_before_it() -> None:
    """``--reset-stats`` once spawned, and the web UI's RESET: tallied timings are wiped with the rest."""
    import loadkit.locust.plugin  # noqa: F401

    events = locust.events
    names = ("request", "report_to_master", "spawning_complete", "reset_stats")
    saved = {name: list(getattr(events, name)._handlers) for name in names}
    try:
        env = Environment(events=events, user_classes=[], reset_stats=True)
        env.create_local_runner()
        batcher = RequestBatcher(env)
        for ms in (1.0, 2.0, 3.0):
            batcher.report("message", ms, None, 10)
        events.spawning_complete.fire(user_count=3)  # the runner resets Locust's statistics here
        batcher.report("message", 4.0, None, 10)
        batcher.flush()
        assert env.stats.total.num_requests == 1 and env.stats.total.max_response_time == 4.0
        batcher.report("message", 5.0, None, 10)
        events.reset_stats.fire()  # the web UI's RESET: the event, then Locust's reset_all
        env.stats.reset_all()
        batcher.flush()
        assert env.stats.total.num_requests == 0
        batcher.close()
    finally:
        for name, handlers in saved.items():
            getattr(events, name)._handlers[:] = handlers


CHECKS = {
    "batched_1": lambda: check_batched_timings_give_locusts_own_figures(1),
    "batched_2": lambda: check_batched_timings_give_locusts_own_figures(2),
    "another_listener": check_another_request_listener_hears_every_timing,
    "worker_report": check_a_worker_report_carries_every_timing_tallied_before_it,  # these import the plugin
    "reset": check_a_reset_wipes_what_was_tallied_before_it,
}

if __name__ == "__main__":
    real_time = time.time
    for check_name, check in CHECKS.items():
        try:
            check()
            print(check_name, "ok", flush=True)
        except Exception:
            print(check_name, "FAILED", traceback.format_exc().replace("\n", " | "), flush=True)
        finally:
            time.time = request_stats._time = real_time
    sys.exit(0)
