"""Bad options give one clear line and a non-zero exit; an unreachable target still reports."""

from __future__ import annotations

import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import ROOT, locust_command, run_locust


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(locust_command("--headless", "-u", "1", "-t", "2s", *args), capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def cli_command(*args: str, users: str = "1") -> list[str]:
    return locust_command("--headless", "-u", users, "-t", "2s", *args)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


BAD_OPTIONS = [
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
]
BAD_USERS = ["0", "-5"]


@pytest.fixture(scope="module")
def typo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("typo") / "typo.toml"
    path.write_text("[tool.loadkit.lifecycle]\nkeepalive_intervall = 30\n")
    return path


@pytest.fixture(scope="module")
def refused(typo_file: Path) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every bad command line of this module, by command: run a few at a time, each its own ``locust``.

    Each is a real Locust start that must refuse its input; nearly all of one is Python importing
    Locust (about a second of a core), so they overlap instead of queueing one after another.
    """
    commands = [cli_command(*args) for args, _ in BAD_OPTIONS]
    commands += [cli_command(users=users) for users in BAD_USERS]
    commands.append(cli_command("--config", str(typo_file)))
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {tuple(cmd): proc for cmd, proc in zip(commands, pool.map(run, commands), strict=True)}


@pytest.mark.slow  # the module's Locust starts
@pytest.mark.parametrize(("args", "expected"), BAD_OPTIONS)
def test_a_bad_option_gives_one_clear_line_and_exit_2(refused, args, expected):
    line = one_error_line(refused[tuple(cli_command(*args))])
    assert expected in line, line


@pytest.mark.slow  # the module's Locust starts
@pytest.mark.parametrize("users", BAD_USERS)
def test_no_users_or_fewer_is_bad_input_not_a_pass(refused, users: str) -> None:
    line = one_error_line(refused[tuple(cli_command(users=users))])
    assert f"-u/--users must be at least 1, got {users}" in line, line


@pytest.mark.slow  # the module's Locust starts
def test_a_typo_in_a_scenario_file_is_exit_2_with_a_hint(refused, typo_file: Path) -> None:
    line = one_error_line(refused[tuple(cli_command("--config", str(typo_file)))])
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
