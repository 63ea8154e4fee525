"""Timings batched into Locust's statistics give the figures Locust computes from one event per timing.

The checks (tests/locust_stats_checks.py) import Locust, so they run in one
subprocess (about two seconds); each test reads its check's line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results() -> dict[str, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "locust_stats_checks.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for line in proc.stdout.splitlines():
        name, _, rest = line.partition(" ")
        out[name] = rest
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_batched_timings_give_locusts_own_figures(results, seed):
    """3,000 timings over several seconds, failures among them: every figure of every entry as Locust's own."""
    assert results.get(f"batched_{seed}") == "ok", results


def test_another_request_listener_hears_every_timing(results):
    """A plugin's listener (or a test's) sees each timing: batching stops, what was tallied goes first."""
    assert results.get("another_listener") == "ok", results


def test_a_worker_report_carries_every_timing_tallied_before_it(results):
    """The plugin's flush (added at import) runs before Locust's own serialisation for the master."""
    assert results.get("worker_report") == "ok", results


def test_a_reset_of_locusts_statistics_wipes_what_was_tallied_before_it(results):
    """``--reset-stats`` once spawned and the web UI's RESET: no timing from before it is counted after it."""
    assert results.get("reset") == "ok", results
