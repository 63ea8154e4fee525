"""What the processes of one gateway share: session numbers, the connection cap, the token window.

Why shared, not per process: a multi-process gateway (``processes`` > 1) must
behave as one gateway. Session numbers key the fault plan, so they are dealt
from one counter: the same seed plans the same faults for sessions 0..n-1
whether one process served them or four. ``max_connections`` and
``token_rate_limit_per_s`` are limits of the whole gateway, so their
counter and window live in shared memory, under one lock. Everything else
(stats, sessions) stays per process and is merged when asked
(``cluster.py``).

``Local`` is the one-process version: plain integers, no lock.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.sharedctypes
from typing import Any

from .limiter import SlidingWindow, ring_size

__all__ = ["Local", "Shared", "ProcessShared"]


class Shared:
    """The interface; ``Local`` and ``ProcessShared`` implement it."""

    def next_seq(self) -> int:
        """The next session number (order of upgrade requests, gateway-wide)."""
        raise NotImplementedError

    def reserve(self, cap: int) -> bool:
        """Take one of ``cap`` connections (0 = no cap); False when all are taken."""
        raise NotImplementedError

    def release(self) -> None:
        """Give one back."""
        raise NotImplementedError

    def active(self) -> int:
        """Connections taken now."""
        raise NotImplementedError

    def token_window(self) -> SlidingWindow:
        """The gateway-wide window of token requests."""
        raise NotImplementedError


class Local(Shared):
    """One process: nothing to share."""

    def __init__(self, token_rate_limit_per_s: float) -> None:
        self._seq = 0
        self._active = 0
        self._tokens = SlidingWindow(token_rate_limit_per_s)

    def next_seq(self) -> int:
        seq, self._seq = self._seq, self._seq + 1
        return seq

    def reserve(self, cap: int) -> bool:
        if cap and self._active >= cap:
            return False
        self._active += 1
        return True

    def release(self) -> None:
        self._active -= 1

    def active(self) -> int:
        return self._active

    def token_window(self) -> SlidingWindow:
        return self._tokens


class ProcessShared(Shared):
    """Shared memory made before the worker processes fork; every call takes one lock.

    The lock is held for a few integer operations only, so a process that
    waits for it in its event loop waits microseconds.
    """

    def __init__(self, token_rate_limit_per_s: float, context: Any = None) -> None:
        ctx = context or multiprocessing.get_context("fork")
        self._lock = ctx.Lock()
        self._counters = ctx.RawArray("q", 2)  # next seq, active connections
        self._ring = ctx.RawArray("d", ring_size(token_rate_limit_per_s))
        SlidingWindow.fresh_ring(self._ring)
        self._tokens = SlidingWindow(token_rate_limit_per_s, ring=self._ring, lock=self._lock)

    def next_seq(self) -> int:
        with self._lock:
            seq = int(self._counters[0])
            self._counters[0] = seq + 1
        return seq

    def reserve(self, cap: int) -> bool:
        with self._lock:
            if cap and self._counters[1] >= cap:
                return False
            self._counters[1] += 1
        return True

    def release(self) -> None:
        with self._lock:
            self._counters[1] -= 1

    def active(self) -> int:
        return int(self._counters[1])

    def token_window(self) -> SlidingWindow:
        return self._tokens
