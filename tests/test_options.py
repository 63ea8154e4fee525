"""The option table is the one list: the parser, the scenario schema, the settings and the README follow it."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from loadkit.errors import ConfigError
from loadkit.locust.options import given, register
from loadkit.options import (
    BY_DEST,
    BY_KEY,
    OPTIONS,
    LoadkitOptions,
    OptionText,
    markdown_table,
    parse_text,
    resolve,
    validate_host,
)
from loadkit.settings import HarnessSettings

ROOT = Path(__file__).resolve().parent.parent


class LocustLikeParser(argparse.ArgumentParser):
    """argparse with the keyword Locust's parser adds (Locust itself must not load in this process)."""

    def add_argument(self, *args: Any, is_multiple: bool = False, include_in_web_ui: bool = True,
                     **kwargs: Any) -> argparse.Action:
        return super().add_argument(*args, **kwargs)


def parsed(*argv: str) -> argparse.Namespace:
    parser = LocustLikeParser()
    register(parser)
    return parser.parse_args(list(argv))


def test_the_readme_lists_exactly_the_tables_options() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README's option table: python -m loadkit.options"


def test_every_option_is_registered_under_its_flag_with_its_default() -> None:
    opts = parsed()
    for option in OPTIONS:
        value = getattr(opts, option.dest)
        assert value == option.default, option.flag
    assert given(opts) == frozenset()


def test_the_typed_options_and_the_settings_are_derived_from_the_table() -> None:
    own = {f.name for f in fields(LoadkitOptions)} - {"settings", "values"}
    assert own <= set(BY_DEST)
    defaults = resolve({})
    # the table's defaults are the settings' defaults (the mix "normal=100" is the dataclass's "normal" alone)
    assert replace(defaults.settings, guest_mix=(("normal", 1.0),)) == HarnessSettings()
    assert defaults.settings.guest_mix == (("normal", 100.0),)
    shaped = set()
    for option in OPTIONS:
        if isinstance(option.settings, str):
            shaped.add(option.settings)
        elif option.settings is not None:
            shaped |= set(option.settings(defaults.values[option.dest]))
        else:
            assert option.dest in own, f"{option.flag} sets nothing"
    assert shaped == {f.name for f in fields(HarnessSettings)} - {"keepalive_misses"}


def test_scenario_keys_name_options_of_the_table() -> None:
    assert BY_KEY["lifecycle.keepalive_interval"].flag == "--keepalive-interval"
    assert BY_KEY["report.series_interval"].flag == "--series-interval"
    assert BY_KEY["target.profile"].dest == "protocol"


def test_a_value_is_parsed_once_and_a_parsed_text_is_not_parsed_again() -> None:
    text = parse_text(BY_DEST["session_seconds"], "5-10")
    assert isinstance(text, OptionText) and text == "5-10" and text.value == (5.0, 10.0)
    assert parse_text(BY_DEST["session_seconds"], text) is text
    fake = OptionText("nonsense", (1.0, 2.0))  # carries its value: taken, not re-read
    assert resolve({"session_seconds": fake}).settings.session_seconds == (1.0, 2.0)
    # the web UI rebuilds a value with type(old)(new text): unparsed, so parsed when resolved
    assert resolve({"session_seconds": type(text)("3-4")}).settings.session_seconds == (3.0, 4.0)


def test_resolve_types_every_value() -> None:
    opts = resolve(vars(parsed("--reconnect-max-attempts", "0", "--reconnect-backoff", "1-2", "--threshold",
                               "drops == 0", "--abort-on-breach", "--loadkit-seed", "7")))
    assert opts.settings.reconnect is False and opts.settings.reconnect_max_attempts == 0
    assert (opts.settings.reconnect_base_s, opts.settings.reconnect_cap_s) == (1.0, 2.0)
    assert opts.threshold == ("drops == 0",) and opts.abort_on_breach is True and opts.settings.seed == 7
    assert opts.series_interval == 10.0 and opts.saturation_cpu == 90.0


@pytest.mark.parametrize(("dest", "text", "message"), [
    ("session_seconds", "30-10", "--session-seconds must be MIN-MAX with MIN <= MAX, got '30-10': write 10-30"),
    ("reconnect_backoff", "0-5", "--reconnect-backoff must be BASE-CAP with 0 < BASE <= CAP, got '0-5'"),
    ("saturation_limit", "1.5", "--saturation-limit must be a share between 0 and 1, got '1.5'"),
    ("protocol", "guset", "--protocol: unknown profile 'guset': expected one of custom, guest, webmessaging"),
    ("gateway_set", "nokey", "--gateway-set expects KEY=VALUE, got 'nokey'"),
])
def test_a_bad_value_is_one_line_naming_the_option_the_value_and_what_would_do(
        dest: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({dest: [text] if BY_DEST[dest].multiple else text})
    assert str(info.value) == message


def test_argparse_reports_a_bad_value_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parsed("--session-sec", "abc")
    assert info.value.code == 2
    assert "argument --session-seconds: --session-seconds must be MIN-MAX in seconds" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["localhost:1234", "chat.example.com", "ftp://x", "http://"])
def test_a_host_needs_a_scheme_and_a_name(host: str) -> None:
    with pytest.raises(ConfigError, match="is not a gateway base URL"):
        validate_host(host)
    assert validate_host("https://chat.example.com/") == "https://chat.example.com"
