"""Test helpers: run the real harness (Locust headless) against a real gateway.

Every process started here is stopped by PID before the helper returns,
also when the test fails or times out.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "locustfile.py"

#: For a run whose subject is another verdict (a breach, a stop, a merge): the generator-lag
#: validity check is held at 10 s, so a test box descheduled for a moment (the lag check's own
#: subject, tested in tests/test_harness_lag.py) cannot turn the verdict under test into "invalid".
LAG_ASIDE = ("--lag-limit", "10000")


def free_port() -> int:
    """A loopback TCP port that is free now and that the kernel will not hand out by itself.

    ``bind(("127.0.0.1", 0))`` returns an *ephemeral* port, and every outgoing
    connection on the machine (thousands a second while a suite runs) draws its
    local port from that same range: between this probe and the child's bind
    (seconds, on a busy machine) a connection could take it, and Locust's web UI
    or master would fail with "Address already in use". A port below the
    ephemeral range is only ever taken by an explicit bind, so it stays free.
    Falls back to an ephemeral port where that range leaves no room below it.
    """
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(10000, low) if low > 11000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free loopback port found below the ephemeral range")


def processes_2() -> list[str]:
    """``--processes 2`` with the master on a free loopback port (the default, ``*:5557``, may be taken)."""
    port = str(free_port())
    return ["--processes", "2", "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    series: list[dict[str, Any]]


def locust_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def run_locust(tmp: Path, *args: str, users: int = 10, rate: float = 10, run_time: str = "5s",
               timeout: float = 90, headless: bool = True, extra_env: dict[str, str] | None = None,
               stop_when: Callable[[], bool] | None = None) -> Run:
    """Run ``locust`` headless with a JSON report and series; return both.

    ``stop_when``: polled while the run goes; once it holds, the run gets SIGINT (a Ctrl-C:
    the report is written, the verdict is inconclusive). For a test whose subject happens at
    a moment the machine decides (guests back in after a restart), so that ``run_time`` is
    only the bound, not a guess that a busy machine can beat.
    """
    report = tmp / "report.json"
    series = tmp / "series.jsonl"
    cmd = locust_command(
        *(["--headless"] if headless else []), "-u", str(users), "-r", str(rate), "-t", run_time,
        "--loadkit-report", str(report), "--loadkit-series", str(series), "--series-interval", "1",
        "--only-summary", *args,
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(extra_env or {}))
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    watcher = None
    if stop_when is not None:
        import threading

        watcher = threading.Thread(target=_interrupt_when, args=(proc, stop_when), daemon=True)
        watcher.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if watcher is not None:
            watcher.join(timeout=5)
    data = json.loads(report.read_text()) if report.exists() else None
    rows = [json.loads(line) for line in series.read_text().splitlines()] if series.exists() else []
    return Run(proc.returncode, out.decode(), err.decode(), data, rows)


def _interrupt_when(proc: subprocess.Popen[bytes], condition: Callable[[], bool]) -> None:
    while proc.poll() is None:
        if condition():
            proc.send_signal(signal.SIGINT)
            return
        time.sleep(0.05)


def series_total(path: Path, key: str, sub: str | None = None) -> int:
    """The sum of ``row[key]`` (or ``row[key][sub]``) over the complete rows of a series file so far.

    What the harness itself has seen, read while the run goes (a line still being
    written has no newline yet and is left for the next read).
    """
    text = path.read_text() if path.exists() else ""
    total = 0
    for line in text.split("\n")[:-1]:
        if line.strip():
            value = json.loads(line)[key]
            total += int(value.get(sub, 0) if sub is not None else value)
    return total


def wait_until(read: Callable[[], T], done: Callable[[T], bool], timeout: float, every: float = 0.05) -> T:
    """``read()`` once ``done`` holds for it, or the last value read when ``timeout`` runs out.

    Waits for what a test needs instead of a fixed time: at once on a quiet
    machine, seconds on a busy one. It never fails by itself: the caller
    asserts on what it gets, so a bound that ran out shows the real value.
    """
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(every)
        value = read()
    return value


def settled(read: Callable[[], dict[str, Any]], timeout: float = 5.0) -> dict[str, Any]:
    """A gateway record (``read()``) once every connection it saw has ended."""
    return wait_until(read, lambda stats: not stats["sessions"]["open"], timeout)


def settled_stats(gateway: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The gateway's ground truth once every connection it saw has ended."""
    return settled(gateway.stats, timeout)


def assert_auth_answers_timed(report: dict[str, Any], auth_ok_sent: int) -> None:
    """Every auth answer the gateway sent was timed by the harness, except ones the run's stop read late.

    One read once the run was stopping is counted in ``harness.untimed_at_stop``, not timed.

    A guest the stop catches between the gateway's auth_ok and reading it reads
    it while closing: it counts as authenticated (as the gateway counts it) but
    has no latency sample, its wait having been cut by the harness, and it ends
    at once, ``stopped_by_harness`` just after auth. Only such guests may lack
    one; otherwise equal.
    """
    timed = report["latency_ms"]["auth"]["count"]
    untimed = report["harness"]["untimed_at_stop"].get("auth", 0)  # read once the run was stopping
    caught = report["sessions"]["by_phase"].get("just_after_auth", {}).get("stopped_by_harness", 0)
    assert 0 <= auth_ok_sent - timed - untimed <= caught, (auth_ok_sent, timed, untimed, caught)


def codes_by(closes: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], int]:
    """Sum close-code rows by the given keys (e.g. "code", "initiator")."""
    out: dict[tuple[Any, ...], int] = {}
    for row in closes:
        k = tuple(row[key] for key in keys)
        out[k] = out.get(k, 0) + row["count"]
    return out


def assert_matches_gateway(report: dict[str, Any], stats: dict[str, Any]) -> None:
    """The harness's counts equal the gateway's record: equal, not close."""
    s = report["sessions"]
    assert report["invariant"]["ok"], report["invariant"]
    assert s["started"] == sum(s["outcomes"].values()) + s["open"]
    assert s["authenticated"] == stats["sessions"]["authenticated"]
    ours = codes_by(report["close_codes"], "code", "reason", "initiator")
    theirs = codes_by(stats["closes"], "code", "reason", "initiator")
    assert ours == theirs, f"harness {ours} != gateway {theirs}"
    if s["open"] == 0:  # every session ended: each message it sent is accounted for
        m = report["messages"]
        assert m["sent"] == m["answered"] + m["unanswered"] + m["refused"] + m["in_flight"], m
        k = report["keepalive"]
        assert k["pings_sent"] == k["pongs"] + k["missed_pongs"] + k["refused"] + k["in_flight"], k
        if report["run"]["profile"] == "guest":  # the guest gateway counts its acks and pongs as such
            assert m["answered"] <= stats["frames_sent"]["ack"], (m, stats["frames_sent"])
            assert k["pongs"] <= stats["frames_sent"]["pong"], (k, stats["frames_sent"])


class MachineLag:
    """How late this machine wakes a sleeper, measured beside a run: the scheduling no harness controls.

    The harness's generator lag (``report["harness"]["lag_ms"]``) is how late its
    timers fire: its own loop's blocking plus the machine's scheduling. A test
    bounding that lag bounds only the harness's part by adding what a plain
    thread in the test process saw over the same time (a 20 ms sleep, as the
    harness's probe does, and how much later it woke).
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        import threading

        self.interval_s = interval_s
        self.late_ms: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            before = time.perf_counter()
            time.sleep(self.interval_s)
            self.late_ms.append(max(0.0, (time.perf_counter() - before - self.interval_s) * 1000.0))

    def percentile(self, q: float) -> float:
        """The q-quantile (0..1) of the lateness seen, in ms (0 if nothing was sampled)."""
        values = sorted(self.late_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def __enter__(self) -> MachineLag:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)
