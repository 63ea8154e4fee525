"""Scenario files: every shipped one runs end to end; the command line wins; secrets stay secret."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT, assert_matches_gateway, codes_by, locust_command

pytestmark = pytest.mark.slow

SHORT = ("-u", "4", "-r", "4", "-t", "4s", "--session-seconds", "1-2", "--only-summary")


def run_config(tmp_path: Path, config: Path, *extra: str, env: dict[str, str] | None = None):
    report = tmp_path / "report.json"
    cmd = locust_command("--config", str(config), *SHORT, "--loadkit-report", str(report), *extra)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))
    import json

    return proc, (json.loads(report.read_text()) if report.exists() else None)


@pytest.mark.parametrize("name", ["smoke.toml", "guest.toml", "webmessaging.toml", "custom-seed-variant.toml",
                                  "load.toml", "soak.toml"])
def test_each_shipped_scenario_runs_against_the_embedded_gateway(tmp_path, name):
    proc, report = run_config(tmp_path, ROOT / "config" / name)
    assert report is not None, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert report["run"]["embedded_gateway"]
    assert report["sessions"]["authenticated"] > 0
    # The embedded gateway's own record is in the report: the harness agrees with it.
    assert_matches_gateway(report, report["gateway"])
    assert "embedded gateway's own record" in proc.stdout and "the same as the harness" in proc.stdout
    assert report["verdict"] in ("pass", "fail", "inconclusive")
    assert {"pass": 0, "fail": 3, "inconclusive": 7}[report["verdict"]] == proc.returncode


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
