"""``GuestUser``: one Locust user = one simulated guest after another."""

from __future__ import annotations

import itertools
from typing import Any

from locust import User, task

from loadkit.session import Report, SessionDriver
from loadkit.settings import Behaviour, behaviour
from loadkit.streams import arrival_stream, cumulative, new_seed, user_stream

_user_numbers = itertools.count(1)

#: Locust starts each second's users at once (its dispatcher hands out
#: ``floor(spawn rate)`` users per iteration, one iteration a second, on a
#: worker as on one process); each guest's first session starts at a random
#: point of that second instead (see ``GuestUser.on_start``).
ARRIVAL_SPREAD_S = 1.0


class _Shared:
    """What every user of one runtime and guest mix would otherwise hold a copy of.

    An idle guest's memory is the product's capacity: the mix's names,
    cumulative weights and ``Behaviour`` objects, and the report callback
    (a bound method is a new object at each attribute access), are made
    once per runtime and mix, and users hold a reference.
    """

    __slots__ = ("runtime", "mix", "behaviours", "cum_weights", "report")

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.mix = runtime.settings.guest_mix
        self.behaviours: tuple[Behaviour, ...] = tuple(behaviour(name) for name, _ in self.mix)
        self.cum_weights = cumulative([w for _, w in self.mix])
        self.report: Report = runtime.report


_shared: list[_Shared] = []  # the latest one (a new runtime or mix replaces it)


def _shared_for(runtime: Any) -> _Shared:
    if not _shared or _shared[0].runtime is not runtime or _shared[0].mix != runtime.settings.guest_mix:
        _shared[:] = [_Shared(runtime)]
    return _shared[0]


def _worker_index(environment: Any) -> int:
    """This worker's index (0 in a single process)."""
    index = getattr(environment.runner, "worker_index", 0)
    return index if isinstance(index, int) else 0


class GuestUser(User):
    """Runs the whole guest lifecycle, then starts over as a new guest.

    token → connect → wait for open → auth → keepalive and messages →
    close (or whatever the target does instead), with reconnects after
    drops. Every timing goes to Locust's request events and to loadkit's
    own metrics (see ``loadkit.locust.plugin``).
    """

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        rt = environment.loadkit
        self.number = next(_user_numbers)
        # Its own stream (one int of state, see loadkit.streams), keyed by the
        # run's seed (recorded in the report) and this worker's index: the
        # workers of a run draw different numbers, a seed replays them.
        seed = getattr(rt, "run_seed", None)
        if seed is None:
            seed = rt.run_seed = rt.settings.seed if rt.settings.seed is not None else new_seed()
        self.rng = user_stream(seed, _worker_index(environment), self.number)
        self._shared = shared = _shared_for(rt)
        self.driver = SessionDriver(
            rt.transport, rt.profile, rt.recorder, rt.settings, self.host or environment.host,
            rt.live, shared.report, self.rng,
        )
        self._guests = 0

    def on_start(self) -> None:
        """Arrive at a random moment of the second Locust started this user in.

        ``-r 20`` starts 20 users in the same millisecond once a second. A
        gateway's guests arrive one by one; 20 token calls, upgrades and auth
        frames at once measure a queue the harness made, and since each
        guest's keepalive runs from its auth, their pings stayed in step for
        the whole run: a soak at ``-r 20`` read ping p95 4x message p95 on a
        gateway that answers both the same way. Spread evenly over the
        second, arrivals keep the rate Locust was asked for (as Artillery's
        ``arrivalRate`` spaces its arrivals) without the burst.
        """
        env = self.environment
        rt = env.loadkit
        at = arrival_stream(rt.run_seed, _worker_index(env), self.number).uniform(0.0, ARRIVAL_SPREAD_S)
        rt.transport.sleep(at)

    def wait_time(self) -> float:
        return self.rng.uniform(*self.environment.loadkit.settings.pause_between)

    @task
    def guest(self) -> None:
        self._guests += 1
        shared = self._shared
        self.driver.run_guest(self.number * 1_000_000 + self._guests,
                              shared.behaviours[self.rng.choice_index(shared.cum_weights)])
