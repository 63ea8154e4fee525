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
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
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
        (("--host", "localhost:1234"), "--host 'localhost:1234' is not a gateway base URL"),
        (("--threshold", "auth.p95 <"), 'threshold "auth.p95 <"'),
        (("--tls-ca", "/nonexistent/ca.pem"), "--tls-ca '/nonexistent/ca.pem': cannot load CA certificates"),
        (("--gateway-set", "foo=bar"), "unknown setting 'foo'"),
        (("--gateway-set", "foo"), "--gateway-set expects KEY=VALUE, got 'foo'"),
        (("--protocol", "custom"), "custom profile"),
        (("--saturation-limit", "2"), "--saturation-limit must be a share between 0 and 1"),
    ],
)
def test_a_bad_option_gives_one_clear_line_and_exit_2(args, expected):
    proc = run_cli(*args)
    line = one_error_line(proc)
    assert expected in line, line


@pytest.mark.parametrize("users", ["0", "-5"])
def test_no_users_or_fewer_is_bad_input_not_a_pass(users: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(locust_command("--headless", "-u", users, "-t", "2s"), capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)
    line = one_error_line(proc)
    assert f"-u/--users must be at least 1, got {users}" in line, line


def test_a_typo_in_a_scenario_file_is_exit_2_with_a_hint(tmp_path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("[tool.loadkit.lifecycle]\nkeepalive_intervall = 30\n")
    proc = run_cli("--config", str(path))
    line = one_error_line(proc)
    assert 'tool.loadkit.lifecycle.keepalive_intervall = 30: unknown key; did you mean "keepalive_interval"?' in line


@pytest.mark.slow
def test_with_processes_a_bad_option_prints_once_and_exits_2() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
    s.close()
    proc = run_cli("--processes", "2", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                   "--master-port", port, "--host", "localhost:1234")
    line = one_error_line(proc)
    assert "--host 'localhost:1234' is not a gateway base URL" in line


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
