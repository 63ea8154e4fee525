"""``-t`` counts from when the run starts, however slowly the process got there.

gevent's timers count from the loop's cached clock, which moves only when the
loop runs. A start that blocks without running it (imports on a busy machine,
a blocking init) left that clock seconds behind, and Locust's ``-t`` timer
fired early: a 3 s run against an external gateway stopped after 0.1 s and
measured nothing. Here the locustfile blocks for a known time before loading
loadkit, as a slow start would; the run must still last its ``-t``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT

BLOCK_S = 2.0
RUN_S = 3

SLOW_LOCUSTFILE = f'''
import time

import locust  # noqa: F401  (gevent patches first)

_t0 = time.perf_counter()
while time.perf_counter() - _t0 < {BLOCK_S}:  # blocks without letting gevent's loop run
    pass

from loadkit.locust import plugin  # noqa: E402,F401
from loadkit.locust.user import GuestUser  # noqa: E402,F401
'''


@pytest.mark.slow
def test_a_slow_start_does_not_shorten_the_run(tmp_path: Path, gateway: Any) -> None:
    locustfile = tmp_path / "slow_locustfile.py"
    locustfile.write_text(SLOW_LOCUSTFILE)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "2", "-r", "10",
           "-t", f"{RUN_S}s", "--host", gateway.url, "--session-seconds", "1-2", "--only-summary",
           "--loadkit-report", str(report)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert report.exists(), err.decode()[-2000:]
    run = json.loads(report.read_text())
    # with a stale clock the run loses about BLOCK_S of its RUN_S; a busy machine only makes it longer
    assert run["run"]["duration_s"] > RUN_S - BLOCK_S / 2, run["run"]
    assert run["sessions"]["authenticated"] > 0
