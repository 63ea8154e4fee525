"""Where an idle guest's memory goes: a one-process locustfile that measures itself and quits.

    cd bench && IDLE_KIND=loadkit ../.venv/bin/locust -f idle_memory.py --headless --only-summary \\
        --session-seconds 3600 --keepalive-interval 20 --message-interval 3600-3600 --guest-pause 0
    cd bench && IDLE_KIND=bare ../.venv/bin/locust -f idle_memory.py --headless --only-summary

It holds ``IDLE_FROM`` guests (default 500), then ``IDLE_TO`` (3,500),
spawned at ``IDLE_RATE`` a second (500, as ``bench/run.py``), and prints, per
guest added, the slope of RSS and of what it is made of: glibc's heap in use
and free (``mallinfo2``), pymalloc's blocks in use, free blocks in its pools
and empty pools (``sys._debugmallocstats``); what is left is mostly each
greenlet's page of Python frame stack. A minute or two; against the embedded
gateway (no ``--host``) on loopback. Free memory between in-use blocks is
fragmentation: it is what varies from run to run, and what spawning faster
than the target completes sessions adds to. ``bench/run.py --only idle`` is
the figure to quote; this says where it goes.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
import tempfile
import time
from typing import Any

import gevent
from locust import LoadTestShape, User, constant, events, task

KIND = os.environ.get("IDLE_KIND", "loadkit")
COUNTS = (int(os.environ.get("IDLE_FROM", "500")), int(os.environ.get("IDLE_TO", "3500")))
RATE = float(os.environ.get("IDLE_RATE", "500"))
_target = [COUNTS[0]]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


_PYMALLOC = {"pymalloc_used": "bytes in allocated blocks", "pymalloc_free_blocks": "bytes in available blocks",
             "pymalloc_empty_pools": "unused pools", "pymalloc_total": "Total"}


def _pymalloc() -> dict[str, int]:
    """pymalloc's own account (``sys._debugmallocstats`` writes it to fd 2)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as out:
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()
    found = {}
    for name, label in _PYMALLOC.items():
        m = re.search(re.escape(label) + r".*?=\s*([\d,]+)\s*$", text, re.M)
        found[name] = int(m.group(1).replace(",", "")) if m else 0
    return found


def memory() -> dict[str, int]:
    with open("/proc/self/statm") as fh:
        rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    mi = libc.mallinfo2()
    return {"rss": rss, "glibc_used": mi.uordblks, "glibc_free": mi.fordblks, **_pymalloc()}


class Shape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        return (_target[0], RATE) if _target[0] else None


if KIND == "bare":
    class BareUser(User):
        wait_time = constant(3600)

        @task
        def idle(self) -> None:
            pass
else:
    from loadkit.locust import plugin  # noqa: F401  (options, events, reports)
    from loadkit.locust import user as _user

    class IdleGuest(_user.GuestUser):
        pass


def _held(env: Any) -> int:
    if KIND == "bare":
        return int(env.runner.user_count)
    rec, total = env.loadkit.recorder, env.loadkit.total
    return int(rec.authenticated + total.authenticated - rec.ended_total - total.ended_total)


def _measure(env: Any) -> None:
    points = []
    for n in COUNTS:
        _target[0] = n
        deadline = time.monotonic() + 60 + n / 100
        while (env.runner.user_count < n or _held(env) < n) and time.monotonic() < deadline:
            gevent.sleep(0.3)
        gevent.sleep(2.0)
        gc.collect()
        points.append((_held(env), memory()))
    (h0, m0), (h1, m1) = points
    if h0 < COUNTS[0] or h1 < COUNTS[1]:
        print(f"idle_memory {KIND}: held only {h0} / {h1} guests: no figure", file=sys.stderr)
    else:
        per = {k: (m1[k] - m0[k]) / (h1 - h0) for k in m0}
        rest = per["rss"] - per["glibc_used"] - per["glibc_free"] - per["pymalloc_total"]
        print(f"idle_memory {KIND}: {h0} -> {h1} guests, bytes per guest: "
              + ", ".join(f"{k} {v:.0f}" for k, v in per.items()) + f", rest {rest:.0f}", file=sys.stderr)
    _target[0] = 0
    env.runner.quit()


@events.test_start.add_listener
def _start(environment: Any, **_kw: Any) -> None:
    gevent.spawn(_measure, environment)
