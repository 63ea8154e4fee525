"""Gateway settings and command line: one validated source, one-line errors, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadkit.gateway.__main__ import main
from loadkit.gateway.faults import Delay
from loadkit.gateway.settings import GatewaySettings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_protocol_defaults() -> None:
    s = GatewaySettings()
    assert (s.token_ttl_s, s.token_scopes, s.auth_deadline_s, s.auth_failure, s.idle_timeout_s) == (
        3600, ("guest:chat",), 10, "silent", 30)
    assert (s.max_text_length, s.rate_limit_per_s, s.rate_limit_strikes, s.max_frame_bytes) == (4000, 5, 3, 65536)
    assert (s.agent_replies, s.agent_think_s, s.token_rate_limit_per_s, s.max_connections) == (True, (0.5, 2.0), 0, 0)
    assert s.faults.drop_fraction == 0 and not s.faults.auth_latency.enabled


def test_the_example_default_config_matches_the_dataclass() -> None:
    assert load_settings(str(ROOT / "config" / "gateway-default.toml")) == GatewaySettings()


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("gateway-*.toml")), ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    load_settings(str(path))


def test_set_coerces_text_to_the_field_types() -> None:
    s = load_settings(None, ["idle_timeout_s=5", "agent_replies=false", "token_scopes=guest:chat,guest:read",
                             "agent_think_s=0.1,0.2", "max_connections=10", "faults.drop_code=reset",
                             "faults.drop_fraction=0.25", "faults.auth_latency=lognormal:40,400"], seed=9)
    assert (s.idle_timeout_s, s.agent_replies, s.token_scopes, s.agent_think_s, s.max_connections, s.seed) == (
        5.0, False, ("guest:chat", "guest:read"), (0.1, 0.2), 10, 9)
    assert s.faults.drop_code == "reset" and s.faults.drop_fraction == 0.25
    assert s.faults.auth_latency == Delay("lognormal", median_ms=40, p99_ms=400)
    assert load_settings(None, ["faults.drop_code=1013"]).faults.drop_code == 1013
    assert load_settings(None, ["token_scopes="]).token_scopes == ()


def test_precedence_is_file_then_set_then_seed(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text("idle_timeout_s = 7\nseed = 1\n[faults]\ndrop_fraction = 0.5\n")
    s = load_settings(str(config), ["idle_timeout_s=8"], seed=2)
    assert (s.idle_timeout_s, s.seed, s.faults.drop_fraction) == (8, 2, 0.5)


def test_public_dict_omits_the_secret_and_is_json_ready() -> None:
    data = load_settings(None, ["secret=hush", "faults.ack_delay=fixed:5"]).public_dict()
    assert "secret" not in data and "hush" not in str(data)
    assert data["faults"]["ack_delay"] == "fixed:5" and data["token_scopes"] == ["guest:chat"]


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("idle_timeout=3", "unknown setting 'idle_timeout'; did you mean 'idle_timeout_s'?"),
        ("faults.dorp_fraction=1", "unknown setting 'faults.dorp_fraction'"),
        ("idle_timeout_s=abc", "setting 'idle_timeout_s' must be a number"),
        ("idle_timeout_s=-1", "idle_timeout_s must be > 0"),
        ("rate_limit_per_s=-1", "rate_limit_per_s must be >= 0"),
        ("max_connections=1.5", "must be an integer"),
        ("auth_failure=Silent", "must be 'silent' or 'explicit'"),
        ("agent_replies=maybe", "must be true or false"),
        ("faults.drop_code=999", "faults.drop_code must be 1001, 1011, 1012, 1013, 4000-4999 or reset"),
        ("faults.auth_latency=gauss:3", "unknown delay kind 'gauss'"),
        ("faults.drop_fraction=2", "faults.drop_fraction must be a fraction between 0 and 1"),
        ("faults.restart_pause_s=-5", "faults.restart_pause_s must be >= 0"),
        ("faults=3", "'faults' is a table"),
        ("novalue", "--set expects key=value"),
    ],
)
def test_bad_settings_say_what_is_wrong(assignment: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, [assignment])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_toml_value_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('idle_timeout_s = "soon"\n')
    with pytest.raises(SettingsError, match="'idle_timeout_s' must be a number"):
        load_settings(str(config))
    config.write_text("agent_replies = 1\n")
    with pytest.raises(SettingsError, match="'agent_replies' must be true or false"):
        load_settings(str(config))


# --- the command line -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "idle_timeout=3"], "unknown setting 'idle_timeout'"),
        (["--set", "idle_timeout_s=-1"], "idle_timeout_s must be > 0"),
        (["--set", "faults.slow_handshake=slow"], "faults.slow_handshake"),
        (["--port", "99999"], "port must be 0..65535"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--host", "0.0.0.0"], "refusing to listen on '0.0.0.0'"),
        (["--host", "10.1.2.3"], "use a loopback address"),
        (["--config", "/nonexistent/gateway.toml"], "cannot read config file"),
    ],
)
def test_bad_options_print_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("loadkit gateway: error: ") and expected in err


def test_invalid_toml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("idle_timeout_s = \n")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not valid TOML" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--watch-stdin" in capsys.readouterr().out


@pytest.mark.timeout(20)
def test_bad_option_as_a_process_has_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadkit.gateway", "--set", "faults.drop_code=banana"],
        cwd=ROOT, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("loadkit gateway: error: ") and "faults.drop_code" in result.stderr
