"""Guests arrive spread over each second, not in the burst Locust starts them in.

Locust's dispatcher starts ``floor(spawn rate)`` users at the same moment,
once a second. Ground truth here is a loopback server that notes when each
guest's first request reached it and then holds it unanswered, so every
user makes exactly one arrival during the run: with ``-u 30 -r 30`` all
30 used to land within a few milliseconds; spread over the second, no
50 ms slot holds more than a handful of them.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.harness import run_locust

pytestmark = pytest.mark.slow

USERS = 30


class HoldingServer:
    """Accepts connections, notes when each one's first bytes came, answers nothing."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.arrivals: list[float] = []
        self.socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> HoldingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        for s in self.socks:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.socks.append(sock)
            threading.Thread(target=self._first_bytes, args=(sock,), daemon=True).start()

    def _first_bytes(self, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                with self._lock:
                    self.arrivals.append(time.monotonic())
        except OSError:
            pass


def busiest(times: list[float], width: float) -> int:
    """The most arrivals any window of ``width`` seconds holds."""
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] > width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_a_seconds_users_arrive_spread_over_it(tmp_path: Path) -> None:
    with HoldingServer() as server:
        run = run_locust(tmp_path, "--host", server.url,
                         users=USERS, rate=USERS, run_time="4s")  # under the 10 s token timeout
        arrivals = list(server.arrivals)
    assert run.report is not None, run.stderr[-2000:]
    assert len(arrivals) == USERS, (len(arrivals), run.stderr[-2000:])  # one held token call each
    span = max(arrivals) - min(arrivals)
    # Uniform over 1 s: 30 arrivals span about 0.94 s, and a 50 ms slot holds about 5 at most. The
    # bounds leave room for a busy machine's timers firing late (which bunches them, and stretches
    # the span); a burst puts all 30 in one slot, and the old code's span was 6 ms.
    assert 0.5 < span < 5.0, span
    assert busiest(arrivals, 0.05) <= USERS // 2, sorted(round(t - min(arrivals), 3) for t in arrivals)
