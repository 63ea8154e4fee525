"""The gateway as a process: first line, graceful stop, dying with its parent, kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from loadkit.gateway import GatewayProcess, GatewayStartError

pytestmark = [pytest.mark.timeout(30), pytest.mark.slow]  # each test starts a gateway process

ROOT = Path(__file__).resolve().parent.parent


def open_session(gw: GatewayProcess, authenticate: bool = True) -> ClientConnection:
    conn = connect(gw.ws_url, compression=None, proxy=None, open_timeout=5, close_timeout=2, legacy=True)
    if authenticate:
        guest = gw.token()
        conn.send(json.dumps({"type": "auth", "guestId": guest["guestId"], "token": guest["token"]}))
        assert json.loads(conn.recv(timeout=5))["type"] == "auth_ok"
    return conn


def close_seen(conn: ClientConnection, timeout: float = 5) -> tuple[int, str, bool]:
    """(code, reason, whether the server's close frame came first); 1006 if none came."""
    try:
        while True:
            conn.recv(timeout=timeout)
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            return 1006, "", False
        return exc.rcvd.code, exc.rcvd.reason, bool(exc.rcvd_then_sent)
    finally:
        conn.close()


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie left for init to reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_first_line_is_the_url_and_the_port_is_real() -> None:
    with GatewayProcess() as gw:
        assert gw.url is not None and gw.url.startswith("http://127.0.0.1:")
        port = int(gw.url.rsplit(":", 1)[1])
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert gw.request("GET", "/_gateway/health")[0] == 200


def test_sigterm_closes_every_session_1001_going_away_and_exits_0() -> None:
    gw = GatewayProcess()
    gw.start()
    try:
        authed, fresh = open_session(gw), open_session(gw, authenticate=False)
        gw.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert close_seen(authed) == (1001, "going away", True)
        assert close_seen(fresh) == (1001, "going away", True)
        assert gw.proc.wait(5) == 0  # type: ignore[union-attr]
        assert gw.stderr_text() == ""
    finally:
        gw.stop()


def test_sigint_stops_the_same_way() -> None:
    with GatewayProcess() as gw:
        conn = open_session(gw)
        gw.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        assert close_seen(conn) == (1001, "going away", True)
        assert gw.proc.wait(5) == 0  # type: ignore[union-attr]


def test_eof_on_stdin_stops_the_gateway_gracefully() -> None:
    with GatewayProcess() as gw:
        conn = open_session(gw)
        gw.close_stdin()
        assert close_seen(conn) == (1001, "going away", True)
        assert gw.proc.wait(5) == 0  # type: ignore[union-attr]


def test_kill_ends_connections_without_a_close_frame() -> None:
    with GatewayProcess() as gw:
        conn = open_session(gw)
        assert gw.kill() == -signal.SIGKILL
        assert close_seen(conn) == (1006, "", False)


def test_the_gateway_dies_with_a_harness_killed_by_sigkill() -> None:
    harness = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from loadkit.gateway import GatewayProcess
            gw = GatewayProcess()
            gw.start()
            print(gw.pid, flush=True)
            time.sleep(60)
        """)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    gateway_pid = None
    try:
        assert harness.stdout is not None
        gateway_pid = int(harness.stdout.readline())
        assert not gone(gateway_pid)
        harness.kill()
        harness.wait(5)
        deadline = time.monotonic() + 5
        while not gone(gateway_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(gateway_pid)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        if gateway_pid is not None and not gone(gateway_pid):
            os.kill(gateway_pid, signal.SIGKILL)


def test_a_failed_start_raises_with_the_child_stderr() -> None:
    gw = GatewayProcess(["--set", "idle_timeout_s=-3"])
    with pytest.raises(GatewayStartError) as info:
        gw.start()
    assert "exited with status 2" in str(info.value)
    assert "loadkit gateway: error: idle_timeout_s must be > 0" in str(info.value)
    assert gw.returncode == 2


def test_a_busy_port_is_one_line_and_exit_1() -> None:
    with GatewayProcess() as first:
        port = int(first.url.rsplit(":", 1)[1])  # type: ignore[union-attr]
        result = subprocess.run([sys.executable, "-m", "loadkit.gateway", "--port", str(port)], cwd=ROOT,
                                capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("loadkit gateway: error: cannot listen")


def test_stop_is_idempotent_and_reports_the_exit_status() -> None:
    gw = GatewayProcess()
    gw.start()
    assert gw.stop() == 0
    assert gw.stop() == 0
    assert GatewayProcess().stop() is None


def test_works_under_gevent_monkey_patching() -> None:
    """Locust patches everything with gevent before the harness starts a gateway."""
    script = textwrap.dedent("""
        from gevent import monkey
        monkey.patch_all()
        from loadkit.gateway import GatewayProcess
        with GatewayProcess(settings={"idle_timeout_s": 5}) as gw:
            gw.token()
            stats = gw.stats()
            print(stats["tokens"]["issued"], stats["settings"]["idle_timeout_s"])
        print(gw.returncode)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "5.0", "0"]
