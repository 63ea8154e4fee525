"""The one rate limiter: at most ``limit`` events in any sliding window.

Why one class: the gateway limits four things the same way (guest messages
per session, token requests per gateway, Web Messaging ``onMessage`` per
session and ``echo`` per socket), and a limit a load test is checked against
must mean the same thing everywhere: a sliding window (not fixed buckets, which
let twice the limit through across a boundary), refusals not counted against
the window, and a ``Retry-After`` in whole seconds until the oldest event
leaves it.

Pure: the caller passes ``now`` (its loop's clock), so tests need no sleeps.
"""

from __future__ import annotations

import collections
import math

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """At most ``limit`` admitted events in any ``window_s`` seconds; ``limit`` 0 = unlimited."""

    __slots__ = ("limit", "window_s", "_times")

    def __init__(self, limit: float, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> int | None:
        """Admit (and record) one event at ``now``: None; or refuse it: whole seconds to retry after.

        A refused event is not recorded, so a client that keeps retrying is
        admitted as soon as the window has room, never locked out.
        """
        if not self.limit:
            return None
        times = self._times
        horizon = now - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.limit:
            return max(1, math.ceil(times[0] + self.window_s - now))
        times.append(now)
        return None
