"""The web UI's start form, posted as a browser posts it: every field, every time.

End to end through the real HTTP form (``POST /swarm``) of a real Locust
web UI with the embedded gateway; results checked against the gateway's
record.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from loadkit.locust.webform import split_values
from tests.harness import ROOT, locust_command, wait_until
from tests.liveui import (WebUI, assert_authenticated_matches, browser_form, gateway_stats, gateway_url, get_json,
                          settled_gateway_stats)

pytestmark = pytest.mark.slow

FAST = ("--session-seconds", "1-2", "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
        "--guest-pause", "0-0.2", "--series-interval", "1")


def test_repeatable_fields_split_on_lines_and_commas_but_keep_a_setting_whole():
    assert split_values("threshold", "") == []
    assert split_values("threshold", "auth.p95 < 300, drop_rate < 0.01\nconnect.p99<500") == [
        "auth.p95 < 300", "drop_rate < 0.01", "connect.p99<500"]
    assert split_values("gateway_set", "faults.auth_latency=lognormal:40,400,idle_timeout_s=5") == [
        "faults.auth_latency=lognormal:40,400", "idle_timeout_s=5"]
    assert split_values("gateway_set", "token_scopes=a,b\nseed=3") == ["token_scopes=a,b", "seed=3"]


def test_the_untouched_form_starts_a_run_and_each_test_is_its_own_run(tmp_path):
    report = tmp_path / "report.json"
    with WebUI(tmp_path, *FAST, "--loadkit-report", str(report)) as ui:
        url = gateway_url(ui)
        answer = ui.swarm(browser_form(ui.page, users=4, rate=4))
        assert answer["success"], answer
        # waited for, bounded: a fixed 3 s saw fewer guests in on a busy machine
        live = _wait_live(ui, lambda r: r["sessions"]["authenticated"] >= 4)
        assert live["sessions"]["authenticated"] >= 4
        ui.stop_test()
        assert ui.wait_state("stopped") == "stopped"
        first = _wait_json(report)
        truth1 = settled_gateway_stats(url)
        assert first["gateway"]["sessions"]["authenticated"] == truth1["sessions"]["authenticated"]
        assert_authenticated_matches(first["sessions"]["authenticated"], truth1["sessions"]["authenticated"], first)

        # a second test from the same form: its own report, compared with the gateway's delta
        answer = ui.swarm(browser_form(ui.page, users=3, rate=3))
        assert answer["success"], answer
        _wait_live(ui, lambda r: r["sessions"]["authenticated"] >= 3)  # the second test's guests are in
        ui.stop_test()
        assert ui.wait_state("stopped") == "stopped"
        second = _wait_json(tmp_path / "report-2.json")
        truth2 = settled_gateway_stats(url)
        gw_auth = truth2["sessions"]["authenticated"] - truth1["sessions"]["authenticated"]
        assert gw_auth > 0 and second["gateway"]["sessions"]["authenticated"] == gw_auth
        assert_authenticated_matches(second["sessions"]["authenticated"], gw_auth, second)
        assert second["invariant"]["ok"], second["invariant"]
        assert json.loads(report.read_text()) == first  # the first test's report is kept
        code = ui.stop()
        out = ui.output()
    assert out.count("embedded gateway's own record") == 2, out
    caught = sum(r["sessions"]["by_phase"].get("during_auth", {}).get("stopped_by_harness", 0)
                 for r in (first, second))
    if not caught:  # (a stop that caught a guest between auth_ok and reading it differs by that guest)
        assert "DIFFERENT from the harness" not in out, out
    assert code == 0, out


def test_thresholds_and_gateway_settings_typed_into_the_form_take_effect(tmp_path):
    report = tmp_path / "report.json"
    with WebUI(tmp_path, *FAST, "--loadkit-report", str(report)) as ui:
        url = gateway_url(ui)
        form = browser_form(ui.page, users=3, rate=3,
                            threshold="sessions.authenticated >= 1, auth.p95 < 60000\ndrop_rate <= 1",
                            gateway_set="faults.drop_fraction=0.5,faults.drop_after_s=0.2,0.8\nidle_timeout_s=7")
        answer = ui.swarm(form)
        assert answer["success"], answer
        assert gateway_url(ui) == url  # restarted on the same port with the new settings
        settings = gateway_stats(url)["settings"]
        assert settings["idle_timeout_s"] == 7 and settings["faults"]["drop_fraction"] == 0.5
        # Each session draws its drop with p = 0.5, so a fixed wait can see none
        # (a busy machine runs few sessions in it): wait, bounded, for the first drop
        # on the wire (the gateway's 1011 close: its fault counter counts planned drops)
        # and then for the harness to have seen it (the live report).
        wait_until(lambda: gateway_stats(url), _dropped_on_the_wire, 60, every=0.2)
        _wait_live(ui, lambda r: r["drops"] > 0)
        ui.stop_test()
        data = _wait_json(report)
        ui.stop()
    assert [t["expr"] for t in data["thresholds"]] == [
        "sessions.authenticated >= 1", "auth.p95 < 60000", "drop_rate <= 1"]
    assert all(t["passed"] for t in data["thresholds"]), data["thresholds"]
    assert data["drops"] > 0  # the fault typed into the form reached the gateway


@pytest.mark.parametrize("field,value", [
    ("session_seconds", "30-10"),
    ("threshold", "auth.p95 << 3"),
    ("keepalive_interval", "0"),
])
def test_a_bad_value_is_refused_before_any_user_spawns_with_the_command_lines_message(tmp_path, field, value):
    flag = "--" + field.replace("_", "-")
    cli = subprocess.run(locust_command("--headless", "-u", "1", "-t", "1", flag, value), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False, env={"PYTHONPATH": str(ROOT),
                                                                          "PATH": "/usr/bin:/bin"})
    cli_line = cli.stderr.strip().splitlines()[-1]
    assert cli.returncode != 0 and "error" in cli_line, cli.stderr
    with WebUI(tmp_path, *FAST) as ui:
        url = gateway_url(ui)
        answer = ui.swarm(browser_form(ui.page, users=2, rate=2, **{field: value}))
        assert not answer["success"]
        # the same line as the command line (whose program name is __main__.py under python -m)
        prog, _, text = cli_line.partition(": error: ")
        assert answer["message"] == ("locust" if prog == "__main__.py" else prog) + ": error: " + text
        assert "\n" not in answer["message"]
        time.sleep(1)
        stats = get_json(ui.base + "/stats/requests")
        assert stats["state"] == "ready" and stats["user_count"] == 0
        assert gateway_stats(url)["tokens"]["issued"] == 0  # not one guest started
        # the good value after the bad one still starts
        assert ui.swarm(browser_form(ui.page, users=2, rate=2))["success"]


def test_reset_restarts_loadkits_figures(tmp_path):
    with WebUI(tmp_path, *FAST) as ui:
        assert ui.swarm(browser_form(ui.page, users=4, rate=4))["success"]
        # waited for, bounded (a fixed 4 s could end before a session did on a busy machine): every
        # user has ended a session, so the figures before the reset clearly exceed the few that the
        # moment between the reset and the next read can hold
        before = _wait_live(ui, lambda r: sum(r["sessions"]["outcomes"].values()) >= 4)
        assert sum(before["sessions"]["outcomes"].values()) >= 4
        from tests.liveui import post
        post(ui.base + "/stats/reset")
        after = get_json(ui.base + "/loadkit/report")
        assert after["sessions"]["authenticated"] < before["sessions"]["authenticated"]
        assert sum(after["sessions"]["outcomes"].values()) <= sum(before["sessions"]["outcomes"].values())
        assert after["invariant"]["ok"], after["invariant"]
        later = _wait_live(ui, lambda r: r["sessions"]["started"] > after["sessions"]["started"])
        assert later["invariant"]["ok"], later["invariant"]
        assert later["sessions"]["started"] > after["sessions"]["started"]


def _wait_json(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written")
        time.sleep(0.2)
    return json.loads(path.read_text())


def _wait_live(ui, done, timeout=60.0):
    """The live report (``/loadkit/report``) once ``done`` holds for it, or the last one read at the bound.

    Waiting for what the test needs, not for a fixed time: on a quiet machine it
    returns at once; on a busy one Locust may take seconds to get guests in.
    """
    return wait_until(lambda: get_json(ui.base + "/loadkit/report"), done, timeout, every=0.2)


def _dropped_on_the_wire(stats):
    return any(c["code"] == 1011 and c["initiator"] == "server" for c in stats["closes"])
