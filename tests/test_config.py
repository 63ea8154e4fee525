"""Scenario files: the shipped ones load, and every mistake is reported at once, exactly.

Errors are compared as whole lines: the message is the interface a person
reads first, so its wording is tested like an API.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadkit.config import Scenario, ScenarioError, load_scenario, redact
from loadkit.locust.options import given, register
from loadkit.options import BY_DEST, OptionText, parse_text
from loadkit.errors import ConfigError
from loadkit.protocol.custom import CustomProfile
from loadkit.protocol.webmessaging import WebMessagingProfile

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["smoke", "load", "soak", "guest", "webmessaging", "custom-seed-variant"]


def write(tmp_path: Path, text: str, name: str = "scenario.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def problems(path: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    lines = str(info.value).splitlines()
    assert lines == [str(p) for p in info.value.problems]
    return [line.removeprefix(f"{path}: ") for line in lines]


# --- the shipped files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_scenario_loads_and_speaks_the_options_language(name: str) -> None:
    scenario = load_scenario(ROOT / "config" / f"{name}.toml")
    values = scenario.option_values()
    assert values and set(values) <= set(BY_DEST) | {"host"}
    for dest, value in values.items():  # every value is parsed, and its text passes the option's own parser
        option = BY_DEST.get(dest)
        if option is not None:
            for item in value if isinstance(value, list) else [value]:
                assert isinstance(item, OptionText) and item.value is not None
                assert parse_text(option, str(item)) == item
    assert scenario.locust["locustfile"] == "locustfile.py"
    assert scenario.make_profile().name == scenario.profile


@pytest.mark.slow
def test_locust_itself_accepts_the_shipped_files_tool_locust_tables() -> None:
    code = (
        "import sys, locust\n"
        "from locust.argument_parser import parse_options\n"
        "import loadkit.locust.plugin\n"
        "for p in sys.argv[1:]:\n"
        "    o = parse_options(['-f', 'locustfile.py', '--config', p])\n"
        "    assert o.headless and o.num_users > 0 and o.run_time > 0, p\n"
    )
    files = [str(ROOT / "config" / f"{n}.toml") for n in SHIPPED]
    result = subprocess.run([sys.executable, "-c", code, *files], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr


def test_the_smoke_file_becomes_exactly_these_option_values() -> None:
    values = load_scenario(ROOT / "config" / "smoke.toml").option_values()
    assert values == {
        "protocol": "guest",
        "session_seconds": "5-15", "keepalive_interval": "10", "pong_timeout": "5", "message_interval": "1-3",
        "message_chars": "40", "guest_pause": "0-1", "connect_timeout": "5", "auth_timeout": "5",
        "reconnect_backoff": "0.5-5", "reconnect_max_attempts": "3",
        "guest_mix": "normal=100",
        "threshold": ["auth.p95 < 250", "message.p95 < 250", "drops == 0", "outcome.auth_refused.count == 0",
                      "outcome.auth_timeout.count == 0", "keepalive.missed_pongs == 0"],
        "gateway_set": ["agent_think_s=0.2,0.5"],
        "loadkit_report": "reports/smoke.json", "loadkit_html": "reports/smoke.html",
    }


def test_the_webmessaging_file_builds_its_profile_with_the_deployment_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_DEPLOYMENT_ID", "0f0e0d0c-aaaa-4bbb-8ccc-123456789abc")
    scenario = load_scenario(ROOT / "config" / "webmessaging.toml")
    profile = scenario.make_profile()
    assert isinstance(profile, WebMessagingProfile) and profile.deployment_id == "0f0e0d0c-aaaa-4bbb-8ccc-123456789abc"
    assert scenario.secrets == {"0f0e0d0c-aaaa-4bbb-8ccc-123456789abc"}
    assert "0f0e0d0c" not in repr(scenario) and "0f0e0d0c" not in repr(profile)
    assert "webmessaging.deployments=loadkit-local" in scenario.option_values()["gateway_set"]


def test_without_the_variable_the_webmessaging_file_uses_its_default_which_is_no_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENESYS_DEPLOYMENT_ID", raising=False)
    scenario = load_scenario(ROOT / "config" / "webmessaging.toml")
    assert scenario.profile_options["deployment_id"] == "loadkit-local" and scenario.secrets == frozenset()


def test_the_custom_file_builds_the_custom_profile() -> None:
    assert isinstance(load_scenario(ROOT / "config" / "custom-seed-variant.toml").make_profile(), CustomProfile)


# --- errors: all at once, each with file, key, value and what was expected -----------------------------------


def test_several_mistakes_are_reported_together_one_per_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
[tool.loadkit.target]
profile = "guset"
host = "chat.example.com"

[tool.loadkit.lifecycle]
session_seconds = "30-10"
keepalive_intervall = 20
pong_timeout = 0
message_chars = -1
survival_marks = ["1m", "5x"]

[tool.loadkit.mix]
normal = 90
wrong_cse = 10
bad_token = "lots"

[tool.loadkit]
thresholds = ["auth.p96 < 300", 42]
reports = {}

[tool.loadkit.gateway]
idle_timout_s = 5
rate_limit_per_s = -1
faults = {drop_fraction = 2}

[tool.loadkit.report]
html = ""
""")
    assert problems(path) == [
        'tool.loadkit.reports = {}: unknown key; did you mean "report"?',
        'tool.loadkit.target.profile = "guset": expected one of custom, guest, webmessaging',
        'tool.loadkit.target.host = "chat.example.com": expected a gateway base URL: http(s)://HOST[:PORT] '
        "(ws/wss accepted)",
        'tool.loadkit.lifecycle.keepalive_intervall = 20: unknown key; did you mean "keepalive_interval"?',
        'tool.loadkit.lifecycle.session_seconds = "30-10": expected MIN-MAX seconds with 0 <= MIN <= MAX, '
        'written "10-30", [10, 30] or one number',
        "tool.loadkit.lifecycle.pong_timeout = 0: expected a number of seconds greater than 0",
        "tool.loadkit.lifecycle.message_chars = -1: expected a whole number, 0 or more",
        'tool.loadkit.lifecycle.survival_marks = ["1m", "5x"]: expected session ages like "1m,5m,30m,60m" or '
        '["90s", "1h"] (bare numbers are seconds)',
        'tool.loadkit.mix.wrong_cse = 10: unknown key; did you mean "wrong_case"?',
        'tool.loadkit.mix.bad_token = "lots": expected a weight: a number, 0 or more',
        'tool.loadkit.thresholds[0] = "auth.p96 < 300": unknown statistic "p96" (expected one of p50, p90, p95, '
        "p99, max, min, mean, count)",
        'tool.loadkit.thresholds[1] = 42: expected an expression string, e.g. "auth.p95 < 300"',
        "tool.loadkit.gateway.idle_timout_s = 5: unknown key; did you mean "
        '"tool.loadkit.gateway.idle_timeout_s"?',
        "tool.loadkit.gateway.rate_limit_per_s = -1: expected >= 0, 0 meaning no limit",
        "tool.loadkit.gateway.faults.drop_fraction = 2: expected a fraction between 0 and 1",
        'tool.loadkit.report.html = "": expected a file path (a non-empty string)',
    ]


def test_the_error_is_a_config_error_and_each_line_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[tool.loadkit.lifecycle]\npong_timeout = -2\nauth_timeout = 'soon'\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value) == (
        f"{path}: tool.loadkit.lifecycle.pong_timeout = -2: expected a number of seconds greater than 0\n"
        f'{path}: tool.loadkit.lifecycle.auth_timeout = "soon": expected a number of seconds greater than 0')


def test_profile_options_are_checked_by_the_profile_and_named_by_their_full_keys(tmp_path: Path) -> None:
    path = write(tmp_path, """
[tool.loadkit.target]
profile = "webmessaging"
[tool.loadkit.lifecycle]
keepalive_interval = 30
[tool.loadkit.profile]
deploymentId = "abc"
goodbye = "wave"
""")
    assert problems(path) == [
        "tool.loadkit.profile.deploymentId = \"abc\": unknown option; did you mean \"deployment_id\"?",
    ]
    path = write(tmp_path, """
[tool.loadkit.target]
profile = "webmessaging"
[tool.loadkit.lifecycle]
keepalive_interval = 30
[tool.loadkit.profile]
goodbye = "wave"
""")
    assert problems(path) == [
        "tool.loadkit.profile.deployment_id: missing; expected the Messenger deployment's id (a UUID), e.g. "
        'deployment_id = {env = "GENESYS_DEPLOYMENT_ID"}',
        'tool.loadkit.profile.goodbye = "wave": expected one of "both", "clear", "close_session", "none"',
    ]


def test_a_custom_description_reports_its_problems_under_the_profile_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
[tool.loadkit.target]
profile = "custom"
[tool.loadkit.profile]
websocket_path = "/ws"
frames = {auth = {t = "{tokn}"}, ping = {id = "{seq}"}, message = {id = "{seq}"}}
[[tool.loadkit.profile.match]]
kind = "auth_ok"
when = {type = "ok"}
""")
    assert problems(path) == [
        'tool.loadkit.profile.frames.auth.t = "{tokn}": unknown placeholder {tokn} here; known here: '
        "{guestId}, {token}, {id}, {ts_ms}",
        'tool.loadkit.profile.match: missing; expected a matcher with kind = "pong": without it every ping would '
        "count as a missed pong",
        'tool.loadkit.profile.match: missing; expected a matcher with kind = "ack": without it no message would '
        "ever be acknowledged",
    ]


def test_webmessaging_refuses_a_keepalive_under_30_s_naming_the_limit(tmp_path: Path) -> None:
    explicit = write(tmp_path, '[tool.loadkit.target]\nprofile = "webmessaging"\n[tool.loadkit.profile]\n'
                     'deployment_id = "d"\n[tool.loadkit.lifecycle]\nkeepalive_interval = 20\n')
    assert problems(explicit) == [
        "tool.loadkit.lifecycle.keepalive_interval = 20: expected at least 30 for the webmessaging profile "
        "(keepalive interval 20 s is below the webmessaging minimum of 30 s (Genesys clients send at most 2 echo "
        "frames per minute per connection))"]
    default = write(tmp_path, '[tool.loadkit.target]\nprofile = "webmessaging"\n[tool.loadkit.profile]\n'
                    'deployment_id = "d"\n', "default.toml")
    assert problems(default) == [
        "tool.loadkit.lifecycle.keepalive_interval: missing; the default 20 s is too short for the webmessaging "
        "profile: set keepalive_interval = 30 or more (keepalive interval 20 s is below the webmessaging minimum "
        "of 30 s (Genesys clients send at most 2 echo frames per minute per connection))"]


def test_a_mix_the_profile_cannot_play_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "config" / "custom-seed-variant.toml").read_text().replace(
        "wrong_case = 5                    #", "command_auth = 5                  #")
    path = write(tmp_path, text)
    assert problems(path) == [
        'tool.loadkit.mix.command_auth = 5: expected a behaviour the custom profile can play: it cannot write '
        'the "command" auth style (it writes normal, none, bad_token, wrong_case)']


def test_cross_field_rules_are_checked_once_each_key_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path, "[tool.loadkit.gateway]\nagent_think_s = [2, 1]\n")
    assert problems(path) == [
        "tool.loadkit.gateway.agent_think_s = [2, 1]: expected [min, max] with 0 <= min <= max"]
    path = write(tmp_path, "[tool.loadkit.mix]\nnormal = 0\n", "mix.toml")
    assert problems(path) == ["tool.loadkit.mix = {\"normal\": 0}: expected at least one behaviour with a weight above 0"]


def test_gateway_settings_with_a_host_are_refused_as_unused(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool.loadkit.target]\nhost = "https://chat.example.com"\n'
                 "[tool.loadkit.gateway]\nidle_timeout_s = 5\n")
    assert problems(path) == [
        "tool.loadkit.gateway: unused: the embedded gateway only starts when no host is given, and "
        "tool.loadkit.target.host is set"]


def test_an_option_set_in_both_tables_must_be_set_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool.locust]\nsession-seconds = "1-2"\nusers = 5\n'
                 '[tool.loadkit.lifecycle]\nsession_seconds = [3, 4]\n')
    assert problems(path) == [
        'tool.locust.session-seconds = "1-2": set twice: also tool.loadkit.lifecycle.session_seconds; '
        "keep one of them"]


def test_unreadable_and_invalid_files_are_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    assert problems(missing) == ["file: cannot be read: No such file or directory"]
    bad = write(tmp_path, "[tool.loadkit\n", "bad.toml")
    assert problems(bad)[0].startswith("file: is not valid TOML: ")


def test_files_without_a_loadkit_table_are_empty_scenarios(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, '[tool.locust]\nusers = 3\n')).option_values() == {}
    assert load_scenario(str(tmp_path / "locust.conf")).option_values() == {}  # not TOML: Locust's own


# --- values: shapes accepted for each kind ----------------------------------------------------------------


def test_each_value_may_be_written_as_toml_or_as_the_command_line_would(tmp_path: Path) -> None:
    path = write(tmp_path, """
[tool.loadkit.lifecycle]
session_seconds = 12.5
message_interval = "2-5"
guest_pause = [0.5, 1]
keepalive_interval = "15"
just_after_auth = 0
reconnect_backoff = [0.25, 8]
reconnect_max_attempts = 0
survival_marks = "1m,90s"
seed = 7
[tool.loadkit.mix]
normal = 9.5
bad_token = 0.5
[tool.loadkit.report]
series_interval = 2.5
""")
    values = load_scenario(path).option_values()
    assert values == {"session_seconds": "12.5", "message_interval": "2-5", "guest_pause": "0.5-1",
                      "keepalive_interval": "15", "just_after_auth": "0", "reconnect_backoff": "0.25-8",
                      "reconnect_max_attempts": "0", "survival_marks": "1m,90s", "loadkit_seed": "7",
                      "guest_mix": "normal=9.5,bad_token=0.5", "series_interval": "2.5"}


def test_gateway_tables_become_set_assignments(tmp_path: Path) -> None:
    path = write(tmp_path, """
[tool.loadkit.gateway]
auth_failure = "explicit"
agent_replies = false
token_scopes = ["guest:chat", "guest:read"]
[tool.loadkit.gateway.faults]
drop_fraction = 0.1
ack_delay = "lognormal:40,400"
[tool.loadkit.gateway.webmessaging]
deployments = ["a", "b"]
""")
    assert load_scenario(path).option_values()["gateway_set"] == [
        "auth_failure=explicit", "agent_replies=false", "token_scopes=guest:chat,guest:read",
        "faults.drop_fraction=0.1", "faults.ack_delay=lognormal:40,400", "webmessaging.deployments=a,b"]


# --- secrets ------------------------------------------------------------------------------------------------


def test_env_values_are_resolved_kept_secret_and_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LK_TEST_DEPLOYMENT", "dep/secret 42")
    monkeypatch.setenv("LK_TEST_GW_SECRET", "hmac-key")
    path = write(tmp_path, """
[tool.loadkit.target]
profile = "webmessaging"
[tool.loadkit.lifecycle]
keepalive_interval = 30
[tool.loadkit.profile]
deployment_id = {env = "LK_TEST_DEPLOYMENT"}
[tool.loadkit.gateway]
secret = {env = "LK_TEST_GW_SECRET"}
""")
    scenario = load_scenario(path)
    assert scenario.profile_options == {"deployment_id": "dep/secret 42"}
    assert scenario.secrets == {"dep/secret 42", "hmac-key"}
    url = scenario.make_profile().websocket_url("https://x", None)  # type: ignore[arg-type]
    assert scenario.redact(f"connect {url} with --set secret=hmac-key") == (
        "connect wss://x/v1?deploymentId=<secret> with --set secret=<secret>")
    for text in (repr(scenario), repr(scenario.make_profile())):
        assert "secret 42" not in text and "hmac-key" not in text


def test_a_missing_environment_variable_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LK_TEST_UNSET", raising=False)
    path = write(tmp_path, '[tool.loadkit.target]\nprofile = "webmessaging"\n[tool.loadkit.lifecycle]\n'
                 'keepalive_interval = 30\n[tool.loadkit.profile]\ndeployment_id = {env = "LK_TEST_UNSET"}\n')
    assert problems(path) == [
        'tool.loadkit.profile.deployment_id = {env = "LK_TEST_UNSET"}: environment variable LK_TEST_UNSET is not '
        'set (set it, or give a default: {env = "LK_TEST_UNSET", default = "…"})']


def test_redact_also_catches_the_url_quoted_form_and_the_longest_first() -> None:
    assert redact("a b/c a%20b%2Fc ab", ["a b/c", "a"]) == "<secret> <secret> <secret>b"


# --- precedence: command line > scenario file > defaults ------------------------------------------------------


class LocustLikeParser(argparse.ArgumentParser):
    """argparse with the keyword Locust's parser adds (Locust itself must not load in this process)."""

    def add_argument(self, *args: Any, is_multiple: bool = False, include_in_web_ui: bool = True,
                     **kwargs: Any) -> argparse.Action:
        return super().add_argument(*args, **kwargs)


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` through an argparse parser with loadkit's options, as Locust parses a command line."""
    parser = LocustLikeParser()
    parser.add_argument("-u", "--users", type=int, dest="num_users")
    register(parser)
    return parser.parse_args(argv)


def test_the_command_line_wins_over_the_file_and_the_file_over_the_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "config" / "smoke.toml")
    opts = parse(["--session-seconds", "1-2", "--threshold=auth.p99 < 1", "-u", "3"])
    applied = scenario.apply_to(opts, given(opts))
    assert opts.session_seconds == "1-2" and opts.threshold == ["auth.p99 < 1"]  # command line
    assert opts.keepalive_interval == "10" and opts.protocol == "guest"           # file
    assert opts.saturation_limit == BY_DEST["saturation_limit"].default          # default
    assert "session_seconds" not in applied and "keepalive_interval" in applied


def test_what_was_given_is_argparses_own_record_abbreviations_included() -> None:
    assert given(parse(["--guest-mix=normal=1", "--protocol", "guest", "--users", "3"])) == {"guest_mix", "protocol"}
    assert given(parse(["--keepalive-int", "30", "--abort-on"])) == {"keepalive_interval", "abort_on_breach"}
    assert given(parse([])) == frozenset()


def test_a_given_value_beats_a_file_that_does_not_set_it_and_one_that_does(tmp_path: Path) -> None:
    path = write(tmp_path, "[tool.loadkit.lifecycle]\nsession_seconds = \"1-2\"\nkeepalive_interval = 10\n")
    for argv in (["--keepalive-interval", "30"], ["--keepalive-i=30"]):
        opts = parse(argv)
        load_scenario(path).apply_to(opts, given(opts))
        assert opts.keepalive_interval == "30" and opts.session_seconds == "1-2"
    smoke = load_scenario(ROOT / "config" / "smoke.toml")
    opts = parse(["--keepalive-interval", "30"])
    smoke.apply_to(opts, given(opts))
    assert opts.keepalive_interval == "30"


def test_each_value_is_parsed_once_into_its_type() -> None:
    opts = parse(["--session-seconds", "1-2"])
    assert opts.session_seconds.value == (1.0, 2.0) and opts.keepalive_interval.value == 20.0  # type= and defaults
    assert opts.loadkit_seed.value is None


def test_loading_scenarios_and_building_profiles_stays_pure() -> None:
    code = (
        "import sys\n"
        "from loadkit.config import load_scenario\n"
        f"for n in {SHIPPED!r}:\n"
        "    load_scenario(f'config/{n}.toml').make_profile()\n"
        "bad = ('gevent', 'locust', 'websockets', 'geventhttpclient', 'zmq', 'socket', '_socket', 'ssl',"
        " 'selectors', 'asyncio')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_scenario_is_a_plain_value() -> None:
    assert Scenario("x.toml").option_values() == {} and Scenario("x.toml").secrets == frozenset()


@pytest.mark.slow
def test_in_a_real_run_the_command_line_abbreviated_beats_the_file_and_the_file_the_defaults(
        tmp_path: Path) -> None:
    from tests.harness import run_locust

    path = write(tmp_path, '[tool.loadkit.lifecycle]\nsession_seconds = "1-2"\nauth_timeout = 7\n')
    run = run_locust(tmp_path, "--config", path, "--keepalive-int", "30", "--auth-timeout=9", users=2,
                     run_time="2s")
    assert run.report is not None, run.stderr[-2000:]
    settings = run.report["run"]["settings"]
    assert settings["keepalive_s"] == 30.0        # given (abbreviated), the file is silent
    assert settings["auth_timeout_s"] == 9.0      # given, beats the file
    assert settings["session_seconds"] == [1.0, 2.0]  # the file, over the default
    assert settings["pong_timeout_s"] == 10.0     # the default
