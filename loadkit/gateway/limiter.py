"""The one rate limiter: at most ``limit`` events in any sliding window.

Why one class: the gateway limits four things the same way (guest messages
per session, token requests per gateway, Web Messaging ``onMessage`` per
session and ``echo`` per socket), and a limit a load test is checked against
must mean the same thing everywhere: a sliding window (not fixed buckets, which
let twice the limit through across a boundary), refusals not counted against
the window, and a ``Retry-After`` in whole seconds until the oldest event
leaves it.

The window is a ring of the last ``ceil(limit)`` admitted times: an event is
admitted when the oldest of them has left the window. Same answers as a queue
of timestamps, but of fixed size, so a multi-process gateway can keep its
gateway-wide token window in shared memory (``shared.py`` passes the ring
and a lock).

Pure: the caller passes ``now`` (``time.monotonic()``, which asyncio's loop
clock is, and which all processes of a machine share), so tests need no sleeps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import MutableSequence
from contextlib import AbstractContextManager

__all__ = ["SlidingWindow", "ring_size"]


def ring_size(limit: float) -> int:
    """Slots a ring for ``limit`` needs: the head index, then ``ceil(limit)`` times."""
    return 1 + math.ceil(limit) if limit else 1


class SlidingWindow:
    """At most ``limit`` admitted events in any ``window_s`` seconds; ``limit`` 0 = unlimited."""

    __slots__ = ("_lock", "_ring", "limit", "window_s")

    def __init__(self, limit: float, window_s: float = 1.0, ring: MutableSequence[float] | None = None,
                 lock: AbstractContextManager[object] | None = None) -> None:
        self.limit = limit
        self.window_s = window_s
        size = ring_size(limit)
        if ring is None:
            ring = [-math.inf] * size
            ring[0] = 1.0
        elif len(ring) != size:
            raise ValueError(f"a ring for limit {limit} needs {size} slots, got {len(ring)}")
        #: ring[0] is the index (1..) of the oldest admitted time; -inf marks a free slot.
        self._ring = ring
        self._lock: AbstractContextManager[object] = lock if lock is not None else contextlib.nullcontext()

    @staticmethod
    def fresh_ring(ring: MutableSequence[float]) -> None:
        """Prepare a shared ring (all zeros when allocated) for use."""
        ring[0] = 1.0
        for i in range(1, len(ring)):
            ring[i] = -math.inf

    def admit(self, now: float) -> int | None:
        """Admit (and record) one event at ``now``: None; or refuse it: whole seconds to retry after.

        A refused event is not recorded, so a client that keeps retrying is
        admitted as soon as the window has room, never locked out.
        """
        if not self.limit:
            return None
        with self._lock:
            ring = self._ring
            head = int(ring[0])
            oldest = ring[head]
            if oldest > now - self.window_s:
                return max(1, math.ceil(oldest + self.window_s - now))
            ring[head] = now
            ring[0] = float(head + 1 if head + 1 < len(ring) else 1)
            return None
