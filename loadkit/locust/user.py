"""``GuestUser``: one Locust user = one simulated guest after another."""

from __future__ import annotations

import itertools
from typing import Any

from locust import User, task

from loadkit.session import SessionDriver
from loadkit.settings import behaviour
from loadkit.streams import cumulative, new_seed, user_stream

_user_numbers = itertools.count(1)


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
        index = getattr(environment.runner, "worker_index", 0)
        self.rng = user_stream(seed, index if isinstance(index, int) else 0, self.number)
        self.driver = SessionDriver(
            rt.transport, rt.profile, rt.recorder, rt.settings, self.host or environment.host,
            rt.live, rt.report, self.rng,
        )
        self._mix_names = [name for name, _ in rt.settings.guest_mix]
        self._mix_cum = cumulative([w for _, w in rt.settings.guest_mix])
        self._guests = 0

    def wait_time(self) -> float:
        return self.rng.uniform(*self.environment.loadkit.settings.pause_between)

    @task
    def guest(self) -> None:
        self._guests += 1
        name = self._mix_names[self.rng.choice_index(self._mix_cum)]
        self.driver.run_guest(self.number * 1_000_000 + self._guests, behaviour(name))
