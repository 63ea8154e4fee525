"""Scenario files: every shipped one runs end to end; the command line wins; secrets stay secret."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness import LAG_ASIDE, ROOT, assert_matches_gateway, codes_by, locust_command

pytestmark = pytest.mark.slow

SHORT = ("-u", "4", "-r", "4", "-t", "4s", "--session-seconds", "1-2", "--only-summary")


def run_config(tmp_path: Path, config: Path, *extra: str, env: dict[str, str] | None = None):
    report = tmp_path / "report.json"
    cmd = locust_command("--config", str(config), *SHORT, "--loadkit-report", str(report), *extra)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))
    import json

    return proc, (json.loads(report.read_text()) if report.exists() else None)


SCENARIOS = ["smoke.toml", "guest.toml", "webmessaging.toml", "custom-seed-variant.toml", "load.toml", "soak.toml"]
#: Shortened runs share two cores: at most this many users each, so the load generator is not the bottleneck.
MAX_USERS = 60


def _users_of(config: Path) -> int:
    import tomllib

    return int(tomllib.loads(config.read_text())["tool"]["locust"]["users"])


#: Latency metrics (a percentile or the maximum of a phase): what seven runs on two cores can breach.
_LATENCY = re.compile(r"\.(p\d+|max|mean)$")


def test_every_shipped_scenario_shortened_to_30_s_passes_or_is_inconclusive_and_smoke_passes_unchanged(tmp_path):
    """A healthy embedded gateway never fails a shipped scenario (issue 10, point 5).

    Each scenario runs at its own settings for 30 s (users capped so that six
    runs share the machine), all at once to keep CI short; gates a short run
    cannot measure (survival at 30 minutes, drift) must read not measured,
    never fail. config/smoke.toml also runs exactly as shipped and must pass.
    """
    import json

    runs = {}
    for name in SCENARIOS:
        config = ROOT / "config" / name
        out = tmp_path / name
        out.mkdir()
        users = min(_users_of(config), MAX_USERS)
        # LAG_ASIDE: seven runs share two cores here, so each harness wakes late by the machine's
        # doing; the lag check (tests/test_harness_lag.py) would call that "invalid", which is not
        # this test's subject. The unchanged smoke run below keeps every check as shipped.
        runs[name] = (out, ["-t", "30s", "-u", str(users), "-r", str(max(1, users // 5)), *LAG_ASIDE])
    runs["smoke.toml unchanged"] = (tmp_path / "smoke-unchanged", [])
    runs["smoke.toml unchanged"][0].mkdir()
    procs = {}
    try:
        for name, (out, extra) in runs.items():
            config = ROOT / "config" / name.split()[0]
            cmd = locust_command("--config", str(config), *extra, "--loadkit-report", str(out / "report.json"),
                                 "--loadkit-html", str(out / "report.html"), "--loadkit-series",
                                 str(out / "series.jsonl"))
            procs[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True, start_new_session=True,
                                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
        results = {name: proc.communicate(timeout=240) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    problems = []
    for name, (out, _extra) in runs.items():
        _stdout, stderr = results[name]
        path = out / "report.json"
        if not path.exists():
            problems.append(f"{name}: no report; {stderr[-1500:]}")
            continue
        report = json.loads(path.read_text())
        shortened = name != "smoke.toml unchanged"
        # The shortened runs share two cores seven ways with their gateways: a latency gate
        # (auth.p95, message.p95, ...) can breach by the machine's doing, which is the measured
        # truth, not this test's subject (the scenario's own logic). Every other gate must hold.
        contended = [row for row in report["thresholds"]
                     if row["status"] == "fail" and shortened and _LATENCY.search(row["metric"])]
        allowed = ("pass", "inconclusive", "fail") if contended else ("pass", "inconclusive") if shortened \
            else ("pass",)
        code = {"pass": 0, "inconclusive": 7, "fail": 3}.get(report["verdict"])
        if report["verdict"] not in allowed or procs[name].returncode != code:
            problems.append(f"{name}: {report['verdict']} (exit {procs[name].returncode}): "
                            f"{report.get('verdict_reason')}")
        assert "Traceback" not in stderr, stderr[-2000:]
        assert report["sessions"]["authenticated"] > 0
        assert_matches_gateway(report, report["gateway"])
        for row in report["thresholds"]:  # nothing a short run cannot see is a breach
            assert row["status"] != "fail" or row in contended, (name, row)
    assert not problems, "\n".join(problems)


def test_the_command_line_wins_over_the_scenario_file(tmp_path):
    config = tmp_path / "scenario.toml"
    config.write_text(f'''
[tool.locust]
locustfile = "{ROOT / 'locustfile.py'}"
headless = true

[tool.loadkit]
thresholds = ["auth.p95 < 0.001"]

[tool.loadkit.lifecycle]
keepalive_interval = 0.5
message_interval = [0.2, 0.3]

[tool.loadkit.mix]
normal = 1
''')
    proc, report = run_config(tmp_path, config, "--keepalive-interval", "0.7")
    settings = report["run"]["settings"]
    assert settings["keepalive_s"] == 0.7          # command line
    assert settings["message_interval"] == [0.2, 0.3]  # file
    assert settings["thresholds"] == ["auth.p95 < 0.001"]
    assert report["verdict"] == "fail" and proc.returncode == 3


def test_a_bad_scenario_names_every_problem_at_once_before_any_traffic(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(f'''
[tool.locust]
locustfile = "{ROOT / 'locustfile.py'}"
headless = true

[tool.loadkit.lifecycle]
session_secconds = [1, 2]
keepalive_interval = -1

[tool.loadkit.mix]
normal = 1
sneaky = 2
''')
    proc, report = run_config(tmp_path, config)
    assert proc.returncode != 0 and report is None
    assert "Traceback" not in proc.stderr
    assert "session_secconds" in proc.stderr and "session_seconds" in proc.stderr  # did you mean
    assert "keepalive_interval" in proc.stderr
    assert "sneaky" in proc.stderr
    assert str(config) in proc.stderr


def test_a_secret_from_the_environment_never_reaches_output_or_reports(tmp_path):
    secret = "s3cr3t-deployment-7f1c2a"
    config = tmp_path / "wm.toml"
    text = (ROOT / "config" / "webmessaging.toml").read_text()
    text = text.replace('locustfile = "locustfile.py"', f'locustfile = "{ROOT / "locustfile.py"}"')
    text = text.replace('deployments = ["loadkit-local"]', f'deployments = ["{secret}"]')
    text = text.replace('report = "reports/webmessaging.json"', "")
    config.write_text(text)
    proc, report = run_config(tmp_path, config, "--loadkit-series", str(tmp_path / "series.jsonl"),
                              "--loadkit-html", str(tmp_path / "r.html"), env={"GENESYS_DEPLOYMENT_ID": secret})
    assert report is not None and report["sessions"]["authenticated"] > 0, proc.stderr[-3000:]
    for blob in (proc.stdout, proc.stderr, (tmp_path / "report.json").read_text(),
                 (tmp_path / "series.jsonl").read_text(), (tmp_path / "r.html").read_text()):
        assert secret not in blob
    closes = codes_by(report["close_codes"], "code")
    assert closes == codes_by(report["gateway"]["closes"], "code")
