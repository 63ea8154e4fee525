"""The one place loadkit sets something inside Locust that Locust offers no public way to set.

``locust.runners.CPU_MONITOR_INTERVAL``: Locust samples each process's CPU
every 10 s (the ``usage_monitor`` event, and the figure a worker's
heartbeat carries to its master). A 30-second run would get two samples,
the first always 0, and the saturation verdict would have nothing to go
on. Locust 2.47 has no option, environment variable or event argument for
the interval, so it is set here, once, when the plugin loads: before any
runner starts its monitor greenlet.
"""

from __future__ import annotations

from locust import runners

#: seconds between CPU samples, for the saturation verdict
CPU_SAMPLE_INTERVAL_S = 2.0


def install() -> None:
    """Set Locust's CPU sampling interval (idempotent)."""
    runners.CPU_MONITOR_INTERVAL = CPU_SAMPLE_INTERVAL_S
