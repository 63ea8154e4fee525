"""The `loadkit` command dispatches to the gateway, to compare and to probe."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT


def loadkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadkit.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_loadkit_gateway_is_the_reference_gateway():
    proc = loadkit("gateway", "--help")
    assert proc.returncode == 0 and "--watch-stdin" in proc.stdout


def test_loadkit_gateway_refuses_a_bad_setting_in_one_line():
    proc = loadkit("gateway", "--set", "idle_timeout_s=-1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "idle_timeout_s" in proc.stderr


def test_loadkit_compare_reads_two_reports(tmp_path):
    proc = loadkit("compare", str(tmp_path / "missing.json"), str(tmp_path / "other.json"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_an_unknown_command_is_one_line_and_exit_2():
    proc = loadkit("frobnicate")
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "loadkit: error: unknown command 'frobnicate' (expected gateway, compare or probe)"
