"""The web UI mode: `locust -f locustfile.py` with no --headless works with loadkit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.harness import ROOT, free_port, locust_command
from tests.liveui import assert_authenticated_matches

pytestmark = pytest.mark.slow


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


def test_the_web_ui_runs_guests_against_the_embedded_gateway_and_reports_on_quit(tmp_path):
    port = free_port()
    report = tmp_path / "report.json"
    cmd = locust_command("--web-host", "127.0.0.1", "--web-port", str(port), "--session-seconds", "1-2",
                         "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
                         "--loadkit-report", str(report))
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                page = _get(base + "/").decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert "session-seconds" in page or "session_seconds" in page  # loadkit's options in the form
        form = urllib.parse.urlencode({"user_count": 4, "spawn_rate": 4}).encode()
        with urllib.request.urlopen(base + "/swarm", data=form, timeout=30) as resp:
            assert json.loads(resp.read())["success"]
        # waited for, bounded, not slept for: on a busy machine 4 s saw fewer than 4 guests in
        deadline = time.monotonic() + 60
        while True:
            stats = json.loads(_get(base + "/stats/requests"))
            names = {row["name"] for row in stats["stats"]}
            tabs = {t["key"]: t["data"] for t in stats["extended_stats"]}  # loadkit's own tab
            auth = [r for r in tabs.get("loadkit", []) if r["figure"] == "auth p50 / p95 / p99"]
            samples = int(auth[0]["detail"].split(",")[0].removeprefix("n ")) if auth else 0
            if ({"token", "connect", "auth"} <= names and samples >= 4) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {"token", "connect", "auth"} <= names
        assert auth and samples >= 4, tabs
        live = json.loads(_get(base + "/loadkit/report"))
        assert live["sessions"]["authenticated"] >= 4
        with urllib.request.urlopen(urllib.request.Request(base + "/stop", method="POST"), timeout=30):
            pass
        deadline = time.monotonic() + 30  # the stop is done (Locust's state), not a fixed second
        while json.loads(_get(base + "/stats/requests"))["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _out, _err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    data = json.loads(report.read_text())
    assert data["run"]["embedded_gateway"] is True
    assert data["sessions"]["authenticated"] >= 4
    assert data["invariant"]["ok"]
    # equal but for guests the stop caught between the gateway's auth_ok and reading it
    assert_authenticated_matches(data["sessions"]["authenticated"], data["gateway"]["sessions"]["authenticated"], data)
