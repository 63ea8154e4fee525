"""Helpers for the live-watching tests: a Locust web UI process, its HTTP form, JSON.

``WebUI`` starts ``locust -f locustfile.py`` (web UI mode, loopback only)
and stops it by PID (SIGINT, then SIGKILL of its process group), also when
the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness import ROOT, free_port, locust_command, settled


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def get_json(url: str) -> Any:
    return json.loads(get(url))


def post(url: str, fields: list[tuple[str, str]] | None = None, timeout: float = 30) -> bytes:
    data = urllib.parse.urlencode(fields or []).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return bytes(resp.read())


def template_args(page: str) -> dict[str, Any]:
    m = re.search(r"templateArgs = (\{.*?\});?\s*\n", page)
    assert m, "no templateArgs in the web UI page"
    return dict(json.loads(m.group(1)))


def browser_form(page: str, users: int, rate: float, **overrides: str) -> list[tuple[str, str]]:
    """Every field Locust's start form sends, untouched, as a browser serialises it.

    The form's script sends each input's value: a checkbox as ``true``/``false``,
    a text field as typed (a list default shows comma-joined, ``[]`` as empty).
    """
    args = template_args(page)
    fields: dict[str, str] = {"user_count": str(users), "spawn_rate": str(rate),
                              "host": args.get("host") or "", "run_time": ""}
    for name, opt in args["extra_options"].items():
        value = opt["default_value"]
        if isinstance(value, bool):
            fields[name] = "true" if value else "false"
        elif isinstance(value, list):
            fields[name] = ",".join(str(v) for v in value)
        else:
            fields[name] = "" if value is None else str(value)
    fields.update(overrides)
    return list(fields.items())


class WebUI:
    """A Locust web UI process with loadkit, on a free loopback port."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        cmd = locust_command("--web-host", "127.0.0.1", "--web-port", str(self.port), *args)
        self.log = open(tmp / "locust.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=tmp, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        deadline = time.monotonic() + 30
        while True:
            try:
                self.page = get(self.base + "/").decode()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the web UI did not come up: {self.output()}") from None
                time.sleep(0.2)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.tmp / "locust.log").read_text(errors="replace")

    def swarm(self, fields: list[tuple[str, str]]) -> dict[str, Any]:
        return dict(json.loads(post(self.base + "/swarm", fields)))

    def stop_test(self) -> None:
        post(self.base + "/stop")

    def wait_state(self, *states: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = str(get_json(self.base + "/stats/requests")["state"])
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.2)

    def stop(self) -> int | None:
        """SIGINT (Locust writes its report and quits), then SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self) -> WebUI:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            try:
                self.stop()
            finally:
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()


def gateway_url(ui: WebUI) -> str:
    return str(template_args(ui.page)["host"])


def gateway_stats(url: str) -> dict[str, Any]:
    return dict(get_json(url.rstrip("/") + "/_gateway/stats"))


def settled_gateway_stats(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The gateway's record once every session it held has ended (after a stop).

    The gateway counts a close when its session's connection is done, a moment
    after the guest has its close answered and Locust says "stopped": read at
    once, the record can miss the stop's last closes.
    """
    return settled(lambda: gateway_stats(url), timeout)




def assert_authenticated_matches(harness: int, gateway: int, report: dict[str, Any]) -> None:
    """The harness's authenticated count against the gateway's, after a stop.

    Equal, except for sessions the stop caught between the gateway's auth_ok
    and the guest reading it: the gateway counted them, the guest never saw
    the answer, and they ended as ``stopped_by_harness`` during auth. At most
    that many may differ, and only that way.
    """
    caught = report["sessions"]["by_phase"].get("during_auth", {}).get("stopped_by_harness", 0)
    assert harness <= gateway <= harness + caught, (harness, gateway, caught)
