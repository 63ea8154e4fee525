"""Remote control for a Locust harness process under ``bench/run.py``.

Imported by the bench locustfiles (never by loadkit itself). It adds two
things to a Locust process and nothing to its users' hot path:

- ``FileShape``: the user count follows ``$BENCH_CTL``, a JSON file the
  orchestrator rewrites (``{"users": N, "rate": R}``; ``{"stop": true}``
  ends the run). Locust polls a shape once a second. A hard time limit
  (``$BENCH_MAX_S``) stops the run even if the orchestrator dies.
- a status writer: four times a second ``$BENCH_STATUS`` gets the user
  count, the request counts per name from Locust's own statistics, and
  whatever the locustfile's ``status_hooks`` add (open sessions, ...).

``$BENCH_HOSTS`` is the comma-separated list of gateway base URLs; users
take them round-robin so the load spreads over several gateway processes.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import gevent
import orjson
from locust import LoadTestShape, events

CTL = os.environ.get("BENCH_CTL", "")
STATUS = os.environ.get("BENCH_STATUS", "")
MAX_S = float(os.environ.get("BENCH_MAX_S", "600"))
HOSTS = [h for h in os.environ.get("BENCH_HOSTS", "").split(",") if h]
_host_cycle = itertools.cycle(HOSTS or [""])

#: Extra status fields: each hook returns a dict merged into the status.
status_hooks: list[Callable[[Any], dict[str, Any]]] = []
#: Written once at quit to ``$BENCH_SAMPLES``: raw samples, e.g. auth latencies in µs.
samples: dict[str, list[int]] = {}


def next_host() -> str:
    return next(_host_cycle)


class FileShape(LoadTestShape):
    abstract = False

    def __init__(self) -> None:
        super().__init__()
        self._started = time.monotonic()
        self._last: tuple[int, float] = (0, 1.0)

    def tick(self) -> tuple[int, float] | None:
        if time.monotonic() - self._started > MAX_S:
            return None
        try:
            with open(CTL, "rb") as fh:
                data = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError):
            return self._last
        if data.get("stop"):
            return None
        self._last = (int(data["users"]), float(data["rate"]))
        return self._last


def _write_status(environment: Any) -> None:
    stats = environment.stats
    runner = environment.runner
    while True:
        counts = {e.name: [e.num_requests, e.num_failures] for e in stats.entries.values()}
        status: dict[str, Any] = {"t": time.time(), "pid": os.getpid(), "users": runner.user_count,
                                  "counts": counts}
        for hook in status_hooks:
            status.update(hook(environment))
        tmp = STATUS + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(status))
        os.replace(tmp, STATUS)
        gevent.sleep(0.25)


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    if STATUS:
        gevent.spawn(_write_status, environment)


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kw: Any) -> None:
    path = os.environ.get("BENCH_SAMPLES")
    if path:
        with open(path, "wb") as fh:
            fh.write(orjson.dumps(samples))
