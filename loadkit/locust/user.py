"""``GuestUser``: one Locust user = one simulated guest after another."""

from __future__ import annotations

import itertools
import random
from typing import Any

from locust import User, task

from loadkit.session import SessionDriver
from loadkit.settings import behaviour

_user_numbers = itertools.count(1)
_SHARED_RNG = random.Random()


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
        seed = rt.settings.seed
        # A generator of its own only when the run must be repeatable: one
        # costs ~3 KB, a fifth of an idle guest's budget at 18,000 guests.
        self.rng = _SHARED_RNG if seed is None else random.Random(seed * 1_000_003 + self.number)
        self.driver = SessionDriver(
            rt.transport, rt.profile, rt.recorder, rt.settings, self.host or environment.host,
            rt.live, rt.report, self.rng,
        )
        self._mix_names = [name for name, _ in rt.settings.guest_mix]
        self._mix_weights = [w for _, w in rt.settings.guest_mix]
        self._guests = 0

    def wait_time(self) -> float:
        return self.rng.uniform(*self.environment.loadkit.settings.pause_between)

    @task
    def guest(self) -> None:
        self._guests += 1
        name = self.rng.choices(self._mix_names, self._mix_weights)[0]
        self.driver.run_guest(self.number * 1_000_000 + self._guests, behaviour(name))
