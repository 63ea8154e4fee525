"""The lag probe: how late this process's timers fire, measured all the time.

Each guest already records how late its own timer wake-ups are (see
``SessionDriver._established``), but guests that sleep for 20 s between
keepalives give few samples, and a run whose sessions all fail gives none.
So every process that runs users also runs one probe greenlet: it sleeps
``PROBE_INTERVAL_S`` (20 ms) and records how much later than due it woke, into the
same ``harness_lag`` histogram. 50 wake-ups a second cost under 1 %
of a core. The master runs no users: its lag is not the users' lag.
"""

from __future__ import annotations

import time
from typing import Any

import gevent

from loadkit.locust.listen import on
from loadkit.metrics.recorder import HARNESS_LAG

#: How often the probe wakes up (s).
PROBE_INTERVAL_S = 0.02


def probe(rt: Any, interval: float = PROBE_INTERVAL_S) -> None:
    """Forever: sleep ``interval``, record the overshoot (µs) in this process's recorder."""
    clock = time.perf_counter
    while True:
        due = clock() + interval
        gevent.sleep(interval)
        rt.recorder.observe(HARNESS_LAG, int((clock() - due) * 1e6))


def install(environment: Any, rt: Any) -> None:
    """Run the probe from each test_start until the run starts stopping, in processes that run users."""
    from locust.runners import MasterRunner

    if isinstance(environment.runner, MasterRunner):
        return
    state: dict[str, Any] = {"greenlet": None}

    @on(environment.events.test_start)
    def _start(**_kw: Any) -> None:
        rt.live.stopping = False
        if state["greenlet"] is None or state["greenlet"].dead:
            state["greenlet"] = gevent.spawn(probe, rt)

    # Stop measuring when the stop begins: Locust's stop holds the loop for
    # tens of milliseconds (it inspects the stack to log its caller), which
    # is not lag the run's sessions saw.
    @on(environment.events.test_stopping)
    def _stop(**_kw: Any) -> None:
        rt.live.stopping = True
        greenlet, state["greenlet"] = state["greenlet"], None
        if greenlet is not None:
            greenlet.kill(block=False)
