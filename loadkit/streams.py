"""Random streams: one per simulated user, derived from the run's seed. Pure.

Why not ``random.Random`` per user: its Mersenne Twister state is 2.5 KB
(about 3 KB of an idle guest's RSS, a fifth of its budget at 18,000 guests
a process). Why not one shared generator: ``--processes`` forks after the
locustfile is imported, so every worker would inherit the same state and
draw the same numbers (session lengths, guest mix, reconnect jitter all in
step across workers: a reconnect storm that is not spread out).

A ``Stream`` is SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014): a 64-bit counter and a
mixing function, one int of state, a few integer operations per draw. Its
start is the mix of (run seed, worker index, user number), so each user in
each worker has its own stream, and the same seed replays the same draws
for the same user on the same worker index. Statistical quality is far more
than a load generator's jitter needs; it is not for cryptography.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from bisect import bisect_right
from itertools import accumulate
from typing import Protocol

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TO_UNIT = 2.0 ** -53


def _mix(z: int) -> int:
    """SplitMix64's finaliser: a bijection on 64-bit ints that scatters every input bit."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class Rng(Protocol):
    """What the session driver and the user draw from (``random.Random`` fits too)."""

    def random(self) -> float: ...

    def uniform(self, a: float, b: float) -> float: ...


class Stream:
    """A small, seedable source of floats in [0, 1): one int of state."""

    __slots__ = ("_state",)

    def __init__(self, *key: int) -> None:
        state = _GOLDEN
        for part in key:
            state = _mix(((state ^ (part & _M64)) + _GOLDEN) & _M64)
        self._state = state

    def random(self) -> float:
        self._state = state = (self._state + _GOLDEN) & _M64
        return (_mix(state) >> 11) * _TO_UNIT

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def choice_index(self, cum_weights: Sequence[float]) -> int:
        """An index drawn by cumulative weights (``cumulative(weights)``)."""
        return min(bisect_right(cum_weights, self.random() * cum_weights[-1]), len(cum_weights) - 1)


def cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


def new_seed() -> int:
    """A fresh run seed for an unseeded run (recorded in the report, so it can be replayed)."""
    return secrets.randbelow(1 << 63)


def user_stream(seed: int, worker_index: int, user_number: int) -> Stream:
    """The stream of user ``user_number`` in the worker with index ``worker_index``."""
    return Stream(seed, worker_index + 1, user_number)


#: The key part that sets a user's arrival stream apart from its main one.
_ARRIVAL_KEY = 0xA221


def arrival_stream(seed: int, worker_index: int, user_number: int) -> Stream:
    """The stream that picks when user ``user_number`` arrives (loadkit.locust.user), apart from its main one.

    Drawing the arrival from the user's own stream would shift every later
    draw: the same seed would replay other session lengths, mixes and jitter
    than a run without the spread did.
    """
    return Stream(seed, worker_index + 1, user_number, _ARRIVAL_KEY)


__all__ = ["Rng", "Stream", "arrival_stream", "cumulative", "new_seed", "user_stream"]
