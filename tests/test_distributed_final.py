"""The master's wait for its workers' final numbers, with real ``--master`` / ``--worker`` processes.

Locust's own quit gives the workers half a second after it tells them to
quit; loadkit's master waits instead (``distributed.await_final_reports``),
bounded by ``FINAL_WAIT_S``, for each worker's final numbers, and writes off
a worker whose numbers never come (the run is then invalid, naming it).

- ``--stop-timeout 3`` with sessions longer than the run: every session
  ends in the stop, seconds after the run time is up, so every close is in
  the workers' final numbers only. The report must still equal the
  gateway's record.
- A worker frozen with SIGSTOP just before the end never sends its final
  numbers: the master ends within the documented bound, says the run is
  invalid and names the worker. The frozen worker is woken and killed also
  when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_distributed import (
    LOST_OUTCOME,
    GatewayProcess,
    Processes,
    assert_matches_gateway,
    codes,
    distributed,
    gateway,  # noqa: F401 (fixture)
    load_report,
    procs,  # noqa: F401 (fixture)
    settled_stats,
    start_master,
    start_worker,
    wait,
)

USERS = 6
#: longer than any run here: no session ends before the run stops
LONG_SESSIONS = ["--session-seconds", "60-70"]


def series_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


def wait_open(gw: GatewayProcess, master: Any, processes: Processes, n: int, timeout: float = 40) -> None:
    """Until the gateway holds ``n`` sessions open (every user of every worker is in a session)."""
    deadline = time.monotonic() + timeout
    while gw.stats()["sessions"]["open"] < n and time.monotonic() < deadline:
        assert master.poll() is None, processes.log("master")[-4000:]
        time.sleep(0.1)
    assert gw.stats()["sessions"]["open"] == n, processes.log("master")[-4000:]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_report_holds_every_workers_last_window_which_comes_after_the_run_time(
        procs: Processes, gateway: GatewayProcess) -> None:  # noqa: F811
    series = procs.tmp / "series.jsonl"
    master, port = start_master(procs, gateway.url, *LONG_SESSIONS, "--stop-timeout", "3",
                                "--loadkit-series", str(series), "--series-interval", "1",
                                run_time="6s", users=USERS)
    workers = [start_worker(procs, f"worker{i}", port) for i in range(2)]
    wait_open(gateway, master, procs, USERS)

    assert wait(master, procs, "master", timeout=60) == 0, procs.log("master")[-4000:]
    for i, w in enumerate(workers):
        assert wait(w, procs, f"worker{i}", timeout=15) == 0
    report = load_report(procs)
    stats = settled_stats(gateway)

    # every session ended in the stop, after the run time: its close is in a final message only
    assert codes(stats["closes"]) == {(1001, "harness stopping", "client"): USERS}
    assert_matches_gateway(report, stats)  # authenticated, close codes, auth answers: equal
    assert report["sessions"]["started"] == report["sessions"]["outcomes"]["stopped_by_harness"] == USERS
    assert report["sessions"]["open"] == 0
    assert report["run"]["workers"] == {"count": 2, "lost": [], "left": []}
    assert report["verdict"] == "pass"
    # the series too: every end is in a window that closed after the run time (the final numbers)
    rows = series_rows(series)
    assert rows and sum(r["ended"] for r in rows) == USERS
    assert all(r["elapsed_s"] >= 6 for r in rows if r["ended"]), rows  # -t 6s, then a 3 s stop timeout


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_worker_frozen_before_the_end_is_written_off_within_the_bound_and_named(
        procs: Processes, gateway: GatewayProcess) -> None:  # noqa: F811
    run_s = 8
    master, port = start_master(procs, gateway.url, *LONG_SESSIONS, run_time=f"{run_s}s", users=USERS)
    workers = [start_worker(procs, f"worker{i}", port) for i in range(2)]
    victim = workers[0]
    deadline = time.monotonic() + 40  # Locust starts its -t timer as it logs this line
    while "Run time limit set to" not in procs.log("master") and time.monotonic() < deadline:
        assert master.poll() is None, procs.log("master")[-4000:]
        time.sleep(0.05)
    timer_started = time.monotonic()
    wait_open(gateway, master, procs, USERS)
    # 1.5 s before the planned end: Locust marks a silent worker missing only ~3 s later,
    # so it is still in the run when the master starts waiting for its final numbers
    time.sleep(max(0.0, timer_started + run_s - 1.5 - time.monotonic()))
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        # the run stops: the other worker's sessions close at the gateway
        deadline = time.monotonic() + 30
        while gateway.stats()["sessions"]["open"] > USERS // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.stats()["sessions"]["open"] == USERS // 2, procs.log("master")[-4000:]
        stopped = time.monotonic()

        code = wait(master, procs, "master", timeout=distributed.FINAL_WAIT_S + 30)
        ended_after = time.monotonic() - stopped
        log = procs.log("master")
        assert code == 4, log[-4000:]  # invalid
        # bounded by the documented wait (plus the report's own writing on a busy machine)
        assert ended_after <= distributed.FINAL_WAIT_S + 10, ended_after
        assert victim.poll() is None  # still frozen: its final numbers never came
    finally:
        os.kill(victim.pid, signal.SIGCONT)
        victim.kill()
        victim.wait()

    assert wait(workers[1], procs, "worker1", timeout=15) == 0
    report = load_report(procs)
    named = re.search(rf"lost worker (\S+) \(pid {victim.pid} on ", log)
    assert named, log[-4000:]
    cid = named.group(1)
    workers_record = report["run"]["workers"]
    assert workers_record["count"] == 2 and workers_record["lost"] == [cid], workers_record
    assert [w["worker"] for w in workers_record["left"]] == [cid], workers_record
    assert report["verdict"] == "invalid"
    checks = {c["name"]: c for c in report["validity"]["checks"]}
    assert not checks["workers"]["ok"] and cid in checks["workers"]["detail"]
    # its open sessions (it held half the users) are counted lost with it; nothing else is off
    s = report["sessions"]
    assert s["outcomes"][LOST_OUTCOME] == USERS // 2
    assert s["outcomes"]["stopped_by_harness"] == USERS // 2
    assert s["open"] == 0 and s["started"] == sum(s["outcomes"].values())
    assert s["authenticated"] == USERS
