"""Timings for Locust's statistics, added up and handed to Locust once per tick, with the same figures.

A chatty guest reports every round trip (an ack, a pong, an agent reply) to
Locust. Through ``events.request`` that is an event fire, Locust's
``on_request`` listener and two ``StatsEntry.log`` calls (the name's entry
and the total), each with its clock read, rounding and per-second dict:
about 11 µs, an eighth of a round trip's CPU in the harness. Here a success
is added to a small per-name tally (count, sum, min, max, Locust's own
rounded bucket, bytes) and the tally is merged into Locust's
``RequestStats`` through ``StatsEntry.extend``, the call a Locust master
uses to merge its workers' reports, so every figure Locust shows, writes to
CSV or ships to a master is the one it would have computed itself.

When it is exact to batch:

- only while Locust's own ``on_request`` is the sole listener of
  ``events.request`` (one more listener, from a plugin or a test, and every
  timing is fired as an event again, after what was tallied);
- successes only: a failure is fired at once (its error table and the
  failure counters stay Locust's), after the tally of its name;
- each tally holds one wall-clock second, so Locust's requests per second
  (``num_reqs_per_sec``) count every timing in its own second;
- a tally is handed over when its second is over, at every
  ``report_to_master`` (before Locust's own listener serialises the
  statistics: see ``loadkit.locust.plugin``), before Locust resets its
  statistics (``spawning_complete`` with ``--reset-stats``, the web UI's
  ``reset_stats``), at ``test_stop`` and ``quitting``, and by a ticker
  twice a second, so what Locust shows lags by at most half a second and
  nothing is left behind or counted across a reset.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import gevent
from locust import stats as locust_stats
from locust.stats import StatsEntry

#: request_type of every loadkit timing in Locust's tables
REQUEST_TYPE = "WS"
#: how often the ticker hands tallies over (seconds)
FLUSH_EVERY_S = 0.5

#: the listener Locust's runner adds to ``events.request`` (it logs into ``RequestStats``)
LOCUST_LISTENER = "Runner.__init__.<locals>.on_request"

_time = time.time
#: Locust's own rounding (replaceable at run time, as its docs say: then that one is called)
_locust_bucket = locust_stats.bucket_response_time
#: every live batcher of this process, for the module-level flush points
_batchers: weakref.WeakSet[RequestBatcher] = weakref.WeakSet()


class _Tally:
    """The successes of one name within one wall-clock second."""

    __slots__ = ("second", "first", "last", "count", "total", "low", "high", "length", "buckets")

    def __init__(self, second: int, now: float, ms: float) -> None:
        self.second = second
        self.first = self.last = now
        self.count = 0
        self.total = 0.0
        self.low = self.high = ms
        self.length = 0
        self.buckets: dict[int, int] = {}


class RequestBatcher:
    """Where loadkit's timings go on their way to Locust (``report`` is the session driver's sink)."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self._event = environment.events.request
        self._handlers: list[Any] | None = getattr(self._event, "_handlers", None)
        #: Locust's listener, once seen alone on the event
        self._own: Any = None
        self._tallies: dict[str, _Tally] = {}
        self._ticker: gevent.Greenlet | None = None
        _batchers.add(self)

    def _batching(self) -> bool:
        """True while Locust's own listener alone hears ``events.request`` (see the module's docstring)."""
        handlers = self._handlers
        if handlers is None or len(handlers) != 1:
            return False
        listener = handlers[0]
        if listener is self._own:
            return True
        stats = getattr(self.environment, "stats", None)
        if getattr(listener, "__qualname__", "") == LOCUST_LISTENER and stats is not None:
            self._own = listener
            return True
        return False

    def report(self, name: str, ms: float, error: BaseException | None, length: int) -> None:
        """One timing: tallied when that is exact, else fired as Locust's request event."""
        handlers = self._handlers
        if error is None and ((handlers is not None and len(handlers) == 1 and handlers[0] is self._own)
                              or self._batching()):
            now = _time()
            second = int(now)
            tally = self._tallies.get(name)
            if tally is None or tally.second != second:
                if tally is not None:
                    self._hand_over(name, tally)
                tally = self._tallies[name] = _Tally(second, now, ms)
                if self._ticker is None:
                    self._ticker = gevent.spawn(self._tick_forever)
            tally.count += 1
            tally.total += ms
            tally.last = now
            if ms < tally.low:
                tally.low = ms
            elif ms > tally.high:
                tally.high = ms
            tally.length += length
            bucket = locust_stats.bucket_response_time
            key = round(ms) if ms < 100.0 and bucket is _locust_bucket else bucket(ms)
            buckets = tally.buckets
            buckets[key] = buckets.get(key, 0) + 1
            return
        self.flush(name)
        self._event.fire(request_type=REQUEST_TYPE, name=name, response_time=ms, response_length=length,
                         exception=error, context=None)

    def flush(self, name: str | None = None) -> None:
        """Hand what is tallied (for ``name``, or all) to Locust's statistics now."""
        tallies = self._tallies
        if name is not None:
            tally = tallies.pop(name, None)
            if tally is not None:
                self._hand_over(name, tally)
            return
        while tallies:
            key = next(iter(tallies))
            self._hand_over(key, tallies.pop(key))

    def _hand_over(self, name: str, tally: _Tally) -> None:
        stats = self.environment.stats
        if stats is None:  # no runner any more: nothing to count into
            return
        part = StatsEntry(stats, name, REQUEST_TYPE)
        part.start_time = tally.first
        part.last_request_timestamp = tally.last
        part.num_requests = tally.count
        part.total_response_time = tally.total  # type: ignore[assignment]  # Locust keeps float ms here
        part.min_response_time = tally.low  # type: ignore[assignment]
        part.max_response_time = tally.high  # type: ignore[assignment]
        part.total_content_length = tally.length
        part.response_times.update(tally.buckets)
        part.num_reqs_per_sec[tally.second] = tally.count
        stats.entries[(name, REQUEST_TYPE)].extend(part)
        stats.total.extend(part)

    def _tick_forever(self) -> None:
        try:
            while True:
                gevent.sleep(FLUSH_EVERY_S)
                self.flush()
        finally:
            self._ticker = None

    def close(self) -> None:
        """Hand everything over and stop the ticker."""
        self.flush()
        ticker = self._ticker
        if ticker is not None:
            ticker.kill(block=False)


def flush_all(**_kw: Any) -> None:
    """Hand every batcher's tallies over: a listener for ``report_to_master``, ``test_stop``, ``quitting``."""
    for batcher in list(_batchers):
        batcher.flush()
