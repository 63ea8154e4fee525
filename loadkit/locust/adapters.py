"""The one place loadkit sets something inside Locust that Locust offers no public way to set.

``locust.runners.CPU_MONITOR_INTERVAL``: Locust samples each process's CPU
every 10 s (the ``usage_monitor`` event, and the figure a worker's
heartbeat carries to its master). A 30-second run would get two samples,
the first always 0, and the saturation verdict would have nothing to go
on. Locust has no option, environment variable or event argument for the
interval: its monitor greenlet (``Runner.monitor_cpu_and_memory``) reads
this module global before each sleep. So it is set here, once, when the
plugin loads: before any runner starts its monitor greenlet.

The event loop's clock (``fresh_loop_clock``): gevent's timers count from
the loop's cached "now", refreshed only when the loop runs. Locust arms its
``-t`` timer (``gevent.spawn_later``) right after ``init``, and until then
the main greenlet has mostly imported and configured without running the
loop: the cached time is as old as the imports (seen: 2.6 s on a busy
machine), and a ``-t 5s`` run stopped after 2.4 s. Refreshing the clock at
the end of loadkit's ``init`` makes ``-t`` mean what it says (gevent's public
``loop.update_now``; nothing in Locust is changed).

Checked against Locust 2.47.0 (``locust/runners.py``). Everything else
loadkit needs from Locust goes through its events and public methods
(``register_message`` / ``send_message``, ``stop``, ``quit``); the end of a
distributed run in particular needs no patch (``loadkit.locust.distributed``).
"""

from __future__ import annotations

import gevent
from locust import runners

#: seconds between CPU samples, for the saturation verdict
CPU_SAMPLE_INTERVAL_S = 2.0
#: the Locust this adapter was checked against
CHECKED_WITH_LOCUST = "2.47.0"


def install() -> None:
    """Set Locust's CPU sampling interval (idempotent)."""
    runners.CPU_MONITOR_INTERVAL = CPU_SAMPLE_INTERVAL_S


def fresh_loop_clock() -> None:
    """Refresh the event loop's cached time, so the next timer counts from now."""
    gevent.get_hub().loop.update_now()
