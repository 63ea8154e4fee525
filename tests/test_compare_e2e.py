"""``loadkit compare`` on real runs: the same run twice is clean, a slower auth is caught.

tests/test_compare.py checks the rules on synthetic reports; here the reports
are real: runs of the harness against the reference gateway, compared with
the command a release pipeline runs (``loadkit compare BASELINE CANDIDATE``),
exit code and all. Two runs with the same seeds against the same gateway
differ only by the machine's noise, which compare must tell from a
regression; the same runs against a gateway whose auth is 50 ms slower must
be flagged on ``auth.p50`` and ``auth.p95`` and exit 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadkit.gateway.process import GatewayProcess

from tests.harness import ROOT, run_locust, settled_stats

pytestmark = pytest.mark.slow

#: Short sessions without chat, paced so the two processes do not saturate the machine themselves (a
#: saturated run's tails are its own queueing): about 200 authentications in 6 s, enough for auth.p95 to
#: be compared (compare needs five samples beyond a percentile in each run).
SHORT = ("--session-seconds", "0.1-0.2", "--keepalive-interval", "1", "--message-interval", "5-5",
         "--guest-pause", "0.05-0.15", "--guest-mix", "normal=100", "--loadkit-seed", "17")
GATEWAY_SEED = 5


def seeded_run(tmp_path: Path, name: str, gateway_factory: Any, **settings: Any) -> Path:
    """One seeded 6 s run against a fresh reference gateway; its report (accounting checked)."""
    gw = gateway_factory(seed=GATEWAY_SEED, **settings)
    workdir = tmp_path / name
    workdir.mkdir()
    run = run_locust(workdir, "--host", gw.url, *SHORT, users=10, rate=10, run_time="6s")
    assert run.report is not None, run.stderr[-2000:]
    assert run.report["invariant"]["ok"], run.report["invariant"]
    stats = settled_stats(gw)
    # every auth the harness timed is one the gateway answered (the stop may catch a few in flight)
    assert 0 < run.report["latency_ms"]["auth"]["count"] <= stats["sessions"]["authenticated"]
    return workdir / "report.json"


def loadkit_compare(tmp_path: Path, baseline: Path, candidate: Path) -> tuple[int, str, dict[str, Any]]:
    out = tmp_path / f"compare-{baseline.parent.name}-{candidate.parent.name}.json"
    proc = subprocess.run([sys.executable, "-m", "loadkit.cli", "compare", str(baseline), str(candidate),
                           "--json", str(out)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stderr == ""
    return proc.returncode, proc.stdout, json.loads(out.read_text())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The reference run, shared by both tests (its gateway is stopped once it is written)."""
    started: list[GatewayProcess] = []

    def factory(seed: int, **settings: Any) -> GatewayProcess:
        gw = GatewayProcess(settings=settings, seed=seed)
        started.append(gw)
        gw.start()
        return gw

    try:
        report = seeded_run(tmp_path_factory.mktemp("compare"), "baseline", factory)
    finally:
        for gw in started:
            gw.stop()
    yield report


def test_the_same_seeded_run_twice_compares_clean(tmp_path: Path, baseline: Path, gateway_factory: Any) -> None:
    again = seeded_run(tmp_path, "again", gateway_factory)
    code, out, result = loadkit_compare(tmp_path, baseline, again)
    assert (code, result["regressions"]) == (0, []), out
    by_name = {m["metric"]: m for m in result["metrics"]}
    # compared, not skipped: the figures a release gate reads were measured in both runs
    for metric in ("token.p50", "connect.p50", "auth.p50", "auth.p95", "drop_rate"):
        assert by_name[metric]["baseline"] is not None and by_name[metric]["candidate"] is not None, metric


def test_an_auth_50_ms_slower_is_flagged_on_auth_p50_and_p95(tmp_path: Path, baseline: Path,
                                                              gateway_factory: Any) -> None:
    slower = seeded_run(tmp_path, "slower", gateway_factory, **{"faults.auth_latency": "fixed:50"})
    code, out, result = loadkit_compare(tmp_path, baseline, slower)
    assert code == 3, out
    assert {"auth.p50", "auth.p95"} <= set(result["regressions"]), out
    # the gateway waited 50 ms before every auth_ok
    assert json.loads(slower.read_text())["latency_ms"]["auth"]["min"] >= 50.0
    assert "auth.p50" in out.splitlines()[-1] and "regression" in out.splitlines()[-1]
