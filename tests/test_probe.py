"""``loadkit probe`` end to end: each cause, caused by a reference gateway configured for it.

Every probe runs as its own process (``python -m loadkit.cli probe``: the
entry point patches for gevent, which the pytest process must not be),
against a gateway on loopback, and is stopped by PID if it hangs. Each test
asserts the named cause, its evidence, and what the gateway itself recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, settled_stats

#: Every token the reference gateway issues starts with base64url('{"e":'): none may leak.
TOKEN_PREFIX = "eyJlIjo"


class Probe:
    def __init__(self, returncode: int, stdout: str, stderr: str, doc: dict[str, Any] | None) -> None:
        self.returncode, self.stdout, self.stderr, self.doc = returncode, stdout, stderr, doc

    @property
    def causes(self) -> list[str]:
        assert self.doc is not None, self.stderr
        return [c["cause"] for c in self.doc["diagnosis"]]

    def cause(self, name: str) -> dict[str, Any]:
        assert self.doc is not None
        found = [c for c in self.doc["diagnosis"] if c["cause"] == name]
        assert found, f"{name} not in {self.causes}\n{self.stdout}"
        return found[0]

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        assert self.doc is not None
        return [e for e in self.doc["trace"] if e["event"] == name and all(e.get(k) == v for k, v in match.items())]

    def folklore(self, claim: str) -> dict[str, Any]:
        assert self.doc is not None
        return next(c for c in self.doc["folklore"] if c["claim"] == claim)


def probe(tmp: Path, *args: str, timeout: float = 60) -> Probe:
    out = tmp / f"probe-{len(list(tmp.glob('probe-*.json')))}.json"
    cmd = [sys.executable, "-m", "loadkit.cli", "probe", *args, "--json", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.read_text() if out.exists() else ""
    for where in (stdout.decode(), stderr.decode(), text):
        assert TOKEN_PREFIX not in where, "a token leaked into the probe's output"
    return Probe(proc.returncode, stdout.decode(), stderr.decode(), json.loads(text) if text else None)


def closes(gw: Any) -> list[tuple[int, str, str]]:
    return sorted((c["code"], c["initiator"], c["phase"]) for c in settled_stats(gw)["closes"])


def test_a_healthy_lifecycle_is_traced_step_by_step_and_completes(tmp_path, gateway_factory):
    gw = gateway_factory(agent_think_s="0.05,0.05")
    run = probe(tmp_path, gw.url, "--hold", "0.5")
    assert run.returncode == 0, run.stdout + run.stderr
    doc = run.doc
    assert doc is not None and doc["completed"] is True and run.causes == ["ok"]
    names = [e["event"] for e in doc["trace"]]
    for step in ("token_request", "token_response", "grant", "connect", "dns", "tcp", "upgrade_request",
                 "upgrade_response", "frame_sent", "frame_received", "ended"):
        assert step in names, step
    grant = run.events("grant")[0]
    assert grant["scopes"] == ["guest:chat"] and grant["token"] == "<grant token>" and grant["expires_in_s"] > 3000
    assert run.events("upgrade_response")[0]["status"] == 101
    steps = [run.events(name)[0] for name in ("connect", "dns", "tcp", "upgrade_request", "upgrade_response")]
    assert all(0 <= e["duration_ms"] < 5000 for e in steps[1:3] + steps[4:])
    assert steps[4]["duration_ms"] == pytest.approx((steps[4]["t"] - steps[3]["t"]) * 1000, abs=0.01)
    sent = [e.get("role") for e in run.events("frame_sent")]
    assert sent[:3] == ["auth", "keepalive", "message"] and sent[-1] is None  # then our close frame
    kinds = [e.get("kind") for e in run.events("frame_received", opcode="text")]
    assert kinds[:3] == ["auth_ok", "pong", "ack"] and "agent_message" in kinds
    auth = run.events("frame_sent", role="auth")[0]
    assert auth["json"] == {"type": "auth", "guestId": grant["guestId"], "token": "<grant token>"}
    ended = run.events("ended")[0]
    assert (ended["code"], ended["initiator"], ended["answered"]) == (1000, "client", True)
    assert closes(gw) == [(1000, "client", "authenticated")]
    assert run.folklore("auth_before_open")["verdict"] == "refuted"
    assert run.folklore("ping_or_init_first")["verdict"] == "refuted"
    assert "diagnosis: completed" in run.stdout and '"type": "auth"' in run.stdout  # pretty-printed


def test_wrong_case_is_a_schema_mismatch_refused_silently(tmp_path, gateway_factory):
    gw = gateway_factory()
    run = probe(tmp_path, gw.url, "--guest", "wrong_case")
    assert run.returncode == 3 and run.doc is not None and not run.doc["completed"]
    mismatch = run.cause("auth_schema_mismatch")
    assert mismatch["diff"] == [{"path": "type", "problem": "value_case", "sent": "Auth", "expected": "auth"}]
    silent = run.cause("auth_refused_silently")
    assert silent["consistent_with"] == ["auth_schema_mismatch"]
    assert any("no error frame" in line for line in silent["evidence"])
    assert run.folklore("case_sensitive_type")["verdict"] == "confirmed"
    assert run.folklore("delay_before_auth")["verdict"] == "refuted"
    # "auth sent before Open": the 101 and the auth frame, with their times
    before = run.folklore("auth_before_open")
    opened, auth = (run.doc["trace"][i] for i in before["events"])
    assert opened["status"] == 101 and auth["role"] == "auth" and auth["t"] >= opened["t"]
    assert closes(gw) == [(1000, "server", "pre_auth")]


@pytest.mark.slow
def test_the_seed_threads_command_frame_is_a_renamed_field(tmp_path, gateway_factory):
    gw = gateway_factory()
    run = probe(tmp_path, gw.url, "--guest", "command_auth")
    diff = {d["path"]: d for d in run.cause("auth_schema_mismatch")["diff"]}
    assert diff["command"]["problem"] == "renamed" and diff["command"]["expected_path"] == "type"
    assert diff["version"]["problem"] == "extra"
    assert "auth_refused_silently" in run.causes


@pytest.mark.slow
def test_send_auth_replays_the_users_payload_and_never_shows_its_token(tmp_path, gateway_factory):
    gw = gateway_factory()
    payload = '{"type":"auth","guestId":"my-static-guest-id","token":"my-valid-oauth-token"}'
    run = probe(tmp_path, gw.url, "--send-auth", payload)
    assert "my-valid-oauth-token" not in run.stdout + json.dumps(run.doc)
    creds = {d["path"]: d for d in run.cause("auth_credentials_mismatch")["diff"]}
    assert creds["guestId"]["sent"] == "my-static-guest-id"
    assert creds["token"]["sent"] == "<your auth token>" and creds["token"]["expected"] == "<grant token>"
    assert "auth_schema_mismatch" not in run.causes
    assert run.cause("auth_refused_silently")["consistent_with"] == ["auth_credentials_mismatch"]
    # with the placeholders, only the casing is wrong
    run = probe(tmp_path, gw.url, "--send-auth", '{"type":"Auth","guestId":"$GUEST_ID","token":"$TOKEN"}')
    assert run.cause("auth_schema_mismatch")["diff"][0]["problem"] == "value_case"
    assert "auth_credentials_mismatch" not in run.causes


@pytest.mark.slow
def test_a_forged_token_refused_explicitly(tmp_path, gateway_factory):
    gw = gateway_factory(auth_failure="explicit")
    run = probe(tmp_path, gw.url, "--guest", "bad_token")
    assert "auth_credentials_mismatch" in run.causes
    refused = run.cause("auth_refused")
    assert "4001" in refused["evidence"][0]
    assert closes(gw) == [(4001, "server", "pre_auth")]


@pytest.mark.slow
def test_a_valid_frame_closed_silently_names_no_local_cause(tmp_path, gateway_factory):
    gw = gateway_factory(**{"faults.silent_close_after_auth": 1})
    run = probe(tmp_path, gw.url)
    silent = run.cause("auth_refused_silently")
    assert silent["consistent_with"] == [] and "profile's own" in silent["evidence"][1]
    assert run.causes == ["auth_refused_silently"]


@pytest.mark.slow
def test_a_refused_token_call_shows_status_and_body(tmp_path, gateway_factory):
    gw = gateway_factory()
    config = tmp_path / "probe.toml"
    config.write_text(f'[tool.loadkit.target]\nhost = "{gw.url}"\n'
                      '[tool.loadkit.profile]\ntoken_path = "/api/v2/nope"\n')
    run = probe(tmp_path, "--config", str(config))
    assert run.returncode == 3 and run.causes == ["token_refused"]
    cause = run.cause("token_refused")
    assert cause["status"] == 404 and "not_found" in cause["evidence"][0]


@pytest.mark.slow
def test_a_token_without_the_scope(tmp_path, gateway_factory):
    gw = gateway_factory(token_scopes="")
    run = probe(tmp_path, gw.url)
    cause = run.cause("token_scope_missing")
    assert cause["scopes"] == [] and cause["required"] == ["guest:chat"]
    assert run.causes == ["token_scope_missing"]
    assert run.folklore("missing_scope")["verdict"] == "confirmed"
    assert closes(gw) == [(4003, "server", "pre_auth")]


@pytest.mark.slow
def test_a_token_expiring_during_the_session(tmp_path, gateway_factory):
    gw = gateway_factory(token_ttl_s=1, idle_timeout_s=10)
    run = probe(tmp_path, gw.url, "--hold", "3", "--keepalive-interval", "0.5")
    cause = run.cause("token_expired")
    assert "session_expired" in cause["evidence"][0]
    assert run.events("ended")[0]["code"] == 4006
    assert closes(gw) == [(4006, "server", "authenticated")]


@pytest.mark.slow
def test_auth_timeout_by_the_gateway_and_by_the_probe(tmp_path, gateway_factory):
    gw = gateway_factory(auth_deadline_s=0.5)
    run = probe(tmp_path, gw.url, "--guest", "no_auth")
    cause = run.cause("auth_timeout")
    assert "no auth frame was sent" in cause["evidence"][0] and "4008" in cause["evidence"][0]
    gw = gateway_factory(**{"faults.auth_latency": "fixed:3000"})
    run = probe(tmp_path, gw.url, "--auth-timeout", "0.5")
    assert run.causes == ["auth_timeout"] and run.events("timeout")[0]["waiting_for"] == "auth answer"


@pytest.mark.slow
def test_no_keepalive_is_closed_by_the_idle_timeout_and_keepalive_is_not(tmp_path, gateway_factory):
    gw = gateway_factory(idle_timeout_s=1)
    run = probe(tmp_path, gw.url, "--guest", "no_keepalive", "--hold", "3")
    cause = run.cause("no_keepalive")
    assert 0.9 <= cause["silence_s"] < 2.0 and "idleTimeout 1" in cause["evidence"][1]
    assert run.folklore("keepalive_or_killed")["verdict"] == "confirmed"
    run = probe(tmp_path, gw.url, "--hold", "1.6", "--keepalive-interval", "0.4")
    assert run.returncode == 0 and run.causes == ["ok"]
    assert run.folklore("keepalive_or_killed")["verdict"] == "consistent"
    assert closes(gw) == [(1000, "client", "authenticated"), (1001, "server", "authenticated")]


@pytest.mark.slow
def test_a_session_dropped_after_auth(tmp_path, gateway_factory):
    gw = gateway_factory(**{"faults.drop_fraction": 1, "faults.drop_after_s": "0.3,0.3", "faults.drop_code": 1011})
    run = probe(tmp_path, gw.url, "--hold", "2")
    cause = run.cause("server_closed_after_auth")
    assert cause["code"] == 1011 and cause["reason"] == "internal error"


@pytest.mark.slow
def test_an_upgrade_refused(tmp_path, gateway_factory):
    gw = gateway_factory(**{"faults.refuse_upgrades_fraction": 1, "faults.refuse_upgrades_status": 429})
    run = probe(tmp_path, gw.url)
    assert run.returncode == 3 and run.causes == ["upgrade_refused"]
    assert run.cause("upgrade_refused")["status"] == 429
    assert run.events("upgrade_response")[0]["status"] == 429


@pytest.mark.slow
def test_nothing_listening_and_a_stalled_upgrade(tmp_path, gateway_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = probe(tmp_path, f"http://127.0.0.1:{port}")
    assert run.returncode == 6 and run.causes == ["connect_refused"]
    gw = gateway_factory(**{"faults.stall_handshake_fraction": 1})
    run = probe(tmp_path, gw.url, "--connect-timeout", "0.5")
    assert run.returncode == 6 and run.causes == ["connect_failed"]
    assert "upgrade timeout" in run.cause("connect_failed")["evidence"][0]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_tls_unverified_then_verified_with_the_ca(tmp_path, gateway_factory):
    cert, key = _self_signed(tmp_path)
    gw = gateway_factory(tls_cert=str(cert), tls_key=str(key))
    run = probe(tmp_path, gw.url)
    assert run.returncode == 6 and run.causes == ["tls_verification_failed"]
    assert "certificate" in " ".join(run.cause("tls_verification_failed")["evidence"]).lower()
    run = probe(tmp_path, gw.url, "--tls-ca", str(cert), "--hold", "0")
    assert run.returncode == 0, run.stdout
    tls = run.events("tls")[0]
    assert tls["version"].startswith("TLS") and "127.0.0.1" in tls["subject"]


@pytest.mark.parametrize("args, says", [
    (["--guest", "nope"], "--guest 'nope'"),
    (["--send-auth", "{type: auth"], "--send-auth is not JSON"),
    (["--hold", "soon"], "--hold must be a number"),
    (["ftp://127.0.0.1:1"], "is not a gateway base URL"),
    (["--protocol", "nope"], "unknown profile"),
    (["http://127.0.0.1:1", "--gateway-set", "x=1"], "--gateway-set only applies"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, says):
    run = probe(tmp_path, *args)
    assert run.returncode == 2 and run.doc is None
    assert run.stderr.startswith("loadkit probe: error: ") and says in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


@pytest.mark.slow
def test_a_reset_after_auth_is_a_lost_connection_with_no_close_frame(tmp_path, gateway_factory):
    gw = gateway_factory(**{"faults.drop_fraction": 1, "faults.drop_after_s": "0.3,0.3", "faults.drop_code": "reset"})
    run = probe(tmp_path, gw.url, "--hold", "2")
    assert run.causes == ["connection_lost"] and "no close frame" in run.cause("connection_lost")["evidence"][0]
    ended = run.events("ended")[0]
    assert (ended["code"], ended["initiator"], ended["close_frame"]) == (1006, "none", False)
    assert not run.events("frame_received", opcode="close")
    assert "connection lost: no close frame (1006)" in run.stdout


@pytest.mark.slow
def test_webmessaging_with_a_secret_deployment_from_the_environment(tmp_path):
    config = tmp_path / "wm.toml"
    config.write_text('[tool.loadkit.target]\nprofile = "webmessaging"\n'
                      '[tool.loadkit.profile]\ndeployment_id = {env = "PROBE_DEPLOYMENT"}\n'
                      '[tool.loadkit.lifecycle]\nkeepalive_interval = 30\n'
                      '[tool.loadkit.gateway]\n"webmessaging.deployments" = ["dep-0123456789"]\n')
    os.environ["PROBE_DEPLOYMENT"] = "dep-0123456789"
    try:
        run = probe(tmp_path, "--config", str(config), "--hold", "0")
        wrong = probe(tmp_path, "--config", str(config), "--guest", "wrong_case")
    finally:
        del os.environ["PROBE_DEPLOYMENT"]
    assert run.returncode == 0, run.stdout
    assert "dep-0123456789" not in run.stdout + json.dumps(run.doc) + wrong.stdout + json.dumps(wrong.doc)
    assert "deploymentId=<secret from the config>" in run.events("connect")[0]["url"]
    assert run.events("token_local") and run.events("frame_sent", role="auth")[0]["json"]["action"] == \
        "configureSession"
    diff = wrong.cause("auth_schema_mismatch")["diff"]
    assert diff == [{"path": "action", "problem": "value_case", "sent": "ConfigureSession",
                     "expected": "configureSession"}]


@pytest.mark.slow
def test_ctrl_c_keeps_the_trace_closes_politely_and_stops_the_embedded_gateway(tmp_path):
    out = tmp_path / "probe.json"
    cmd = [sys.executable, "-m", "loadkit.cli", "probe", "--hold", "30", "--json", str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "... → http://127.0.0.1:PORT (embedded reference gateway)"
        port = int(first.split("127.0.0.1:")[1].split()[0])
        for line in proc.stdout:
            if "[ack]" in line:
                break
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    doc = json.loads(out.read_text())
    ended = next(e for e in doc["trace"] if e["event"] == "ended")
    assert (ended["code"], ended["reason"], ended["initiator"]) == (1001, "probe interrupted", "client")
    assert [e["event"] for e in doc["trace"]][-1] == "interrupted"
    assert [c["cause"] for c in doc["diagnosis"]] == ["interrupted"] and not doc["completed"]
    assert "diagnosis: NOT completed" in stdout
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.slow
def test_fast_messages_show_the_rate_limit_refusals_before_the_close(tmp_path, gateway_factory):
    gw = gateway_factory(rate_limit_per_s=2, rate_limit_strikes=3, agent_replies=False)
    run = probe(tmp_path, gw.url, "--guest", "fast_messages", "--hold", "3")
    cause = run.cause("server_closed_after_auth")
    assert cause["code"] == 4029 and "error frame(s) came first" in cause["evidence"][2]
    assert "4029" in cause["evidence"][2]
    assert len(run.events("frame_received", kind="rate_limited")) == 3
    assert closes(gw) == [(4029, "server", "authenticated")]
