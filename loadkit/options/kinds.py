"""Kinds of option value: each a parser from text (the command line's grammar) and from TOML.

Every loadkit option (``loadkit.options.OPTIONS``) has one ``Kind``: how its
text is parsed (once, into an ``OptionText`` that carries the value), how a
scenario file's TOML value becomes that text, and the words "expected …"
that a bad value's message uses. Pure: no I/O, no Locust.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from loadkit.errors import ConfigError
from loadkit.gateway.settings import SettingsError, load_settings
from loadkit.protocol import registry
from loadkit.report import thresholds
from loadkit.settings import (
    parse_count,
    parse_marks,
    parse_mix,
    parse_range,
    parse_seconds,
)


class _Unparsed:
    def __repr__(self) -> str:
        return "<unparsed>"


UNPARSED: Any = _Unparsed()


class OptionText(str):
    """An option's text as written, carrying its parsed ``value`` (``UNPARSED`` if none yet).

    A ``str`` so the web UI, config files and Locust's spawn messages treat
    it as the text it is; Locust's web UI rebuilds it with
    ``type(old)(new_text)``, which gives an unparsed one.
    """

    value: Any

    def __new__(cls, text: str, value: Any = UNPARSED) -> Self:
        self = super().__new__(cls, text)
        self.value = value
        return self


# -- kinds of value ---------------------------------------------------------------------------------


def number_text(value: float) -> str:
    """A TOML number as the command line writes it: ``10.0`` → ``10``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def is_number(value: object) -> bool:
    """A real number (not a bool, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _toml_scalar(value: object) -> str | None:
    if is_number(value):
        return number_text(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        return value.strip()
    return None


def _toml_range(value: object) -> str | None:
    if isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value):
        return f"{number_text(value[0])}-{number_text(value[1])}"
    return _toml_scalar(value)


def _toml_count(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    return str(value).strip()


def _toml_marks(value: object) -> str | None:
    if isinstance(value, list) and value and all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                 for v in value):
        return ",".join(str(v) for v in value)
    return value if isinstance(value, str) else None


def _toml_path(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _toml_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Kind:
    """A kind of value: its text grammar, how TOML spells it, and what to expect."""

    name: str
    #: text → value; raises ConfigError naming ``flag``
    parse: Callable[[str, str], Any]
    #: a TOML value → the command line's text for it; None if TOML has the wrong type
    from_toml: Callable[[object], str | None]
    #: what a scenario file should hold, after "expected "
    expected: str


def _backoff(text: str, flag: str) -> tuple[float, float]:
    lo, hi = parse_range(text, flag)
    if lo <= 0:
        raise ConfigError(f"{flag} must be BASE-CAP with 0 < BASE <= CAP, got {text.strip()!r}")
    return lo, hi


def _share(text: str, flag: str) -> float:
    value = parse_seconds(text, flag, positive=False)
    if value > 1:
        raise ConfigError(f"{flag} must be a share between 0 and 1, got {text!r}")
    return value


def _percent(text: str, flag: str) -> float:
    value = parse_seconds(text, flag)
    if not math.isfinite(value) or value > 100:
        raise ConfigError(f"{flag} must be a CPU percentage above 0 and at most 100, got {text!r}")
    return value


def _milliseconds(text: str, flag: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number of milliseconds, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"{flag} must be a number of milliseconds greater than 0, got {text!r}")
    return value


def _port(text: str, flag: str) -> int:
    """A TCP port; empty: none (0)."""
    if not str(text).strip():
        return 0
    port = parse_count(text, flag)
    if not 0 < port < 65536:
        raise ConfigError(f"{flag} must be a port between 1 and 65535, got {text!r}")
    return port


def _seed(text: str, flag: str) -> int | None:
    return parse_count(text, flag) if str(text).strip() else None


def _profile(text: str, flag: str) -> str:
    if text not in registry.names():
        raise ConfigError(f"{flag}: unknown profile {text!r}: expected one of {', '.join(registry.names())}")
    return text


def _threshold(text: str, flag: str) -> str:
    thresholds.parse(text)  # ThresholdError is a ConfigError: one line naming the expression
    return text


def _gateway_set(text: str, flag: str) -> str:
    if "=" not in text:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {text!r}")
    try:
        load_settings(None, [text])
    except SettingsError as exc:
        raise ConfigError(f"{flag} {text!r}: {exc}") from None
    return text


RANGE = Kind("range", lambda t, f: parse_range(t, f), _toml_range,
             'MIN-MAX seconds with 0 <= MIN <= MAX, written "10-30", [10, 30] or one number')
BACKOFF = Kind("backoff", _backoff, _toml_range,
               'BASE-CAP seconds with 0 < BASE <= CAP, written "0.5-15" or [0.5, 15]')
SECONDS = Kind("seconds", lambda t, f: parse_seconds(t, f), _toml_scalar, "a number of seconds greater than 0")
SECONDS0 = Kind("seconds0", lambda t, f: parse_seconds(t, f, positive=False), _toml_scalar,
                "a number of seconds, 0 or more")
COUNT = Kind("count", lambda t, f: parse_count(t, f), _toml_count, "a whole number, 0 or more")
SEED = Kind("seed", _seed, _toml_count, "a whole number, 0 or more")
MIX = Kind("mix", lambda t, f: parse_mix(t), _toml_text, "NAME=WEIGHT,… of known behaviours")
MARKS = Kind("marks", lambda t, f: parse_marks(t), _toml_marks,
             'session ages like "1m,5m,30m,60m" or ["90s", "1h"] (bare numbers are seconds)')
PATH = Kind("path", lambda t, f: str(t), _toml_path, "a file path (a non-empty string)")
TEXT = Kind("text", lambda t, f: str(t), _toml_text, "a string")
MILLISECONDS = Kind("milliseconds", _milliseconds, _toml_scalar, "a number of milliseconds greater than 0")
PORT = Kind("port", _port, _toml_count, "a TCP port between 1 and 65535")
SHARE = Kind("share", _share, _toml_scalar, "a share between 0 and 1")
PERCENT = Kind("percent", _percent, _toml_scalar, "a CPU percentage above 0, at most 100")
PROFILE = Kind("profile", _profile, _toml_text, "one of " + ", ".join(registry.names()))
THRESHOLD = Kind("threshold", _threshold, _toml_text, 'an expression string, e.g. "auth.p95 < 300"')
GATEWAY_SET = Kind("gateway_set", _gateway_set, _toml_text, "KEY=VALUE")
FLAG = Kind("flag", lambda t, f: t.strip().lower() in ("1", "true", "yes", "on"),
            lambda v: ("true" if v else "false") if isinstance(v, bool) else None, "true or false")
