"""Bad options give one clear line and a non-zero exit; an unreachable target still reports."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.harness import ROOT, locust_command, run_locust


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(locust_command("--headless", "-u", "1", "-t", "2s", *args), capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--session-seconds", "30-10"), "--session-seconds must be MIN-MAX with MIN <= MAX, got '30-10'"),
        (("--keepalive-interval", "-5"), "--keepalive-interval must be greater than 0, got '-5'"),
        (("--message-interval", "abc"), "--message-interval must be MIN-MAX in seconds"),
        (("--guest-mix", "normal=90,sneaky=10"), "guest mix: unknown behaviour 'sneaky'"),
        (("--threshold", "auth.p96 < 3"), 'unknown statistic "p96"'),
        (("--host", "not a url"), "--host 'not a url' is not a gateway base URL"),
        (("--host", "ftp://127.0.0.1:1"), "is not a gateway base URL"),
    ],
)
def test_a_bad_option_gives_one_clear_line_and_a_nonzero_exit(args, expected):
    proc = run_cli(*args)
    line = one_error_line(proc)
    assert expected in line, line


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now: connections are refused
    return port


@pytest.mark.slow
def test_an_unreachable_target_still_reports_and_exits_nonzero(tmp_path):
    run = run_locust(tmp_path, "--host", f"http://127.0.0.1:{_closed_port()}",
                     "--guest-pause", "0.1-0.2", users=3, run_time="3s")
    assert run.returncode == 6, run.stderr[-2000:]
    report = run.report
    assert report is not None and report["verdict"] == "unreachable"
    outcomes = report["sessions"]["outcomes"]
    assert outcomes.get("connect_refused", 0) > 0
    assert report["sessions"]["authenticated"] == 0
    assert report["invariant"]["ok"]
    unreachable = [ln for ln in run.stderr.splitlines() if "unreachable" in ln]
    assert len(unreachable) == 1 and "connect_refused" in unreachable[0]
    assert "Traceback" not in run.stderr
