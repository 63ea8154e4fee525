"""Harness settings and the text grammars of loadkit's option values, pure.

Each ``parse_*`` reads one option value's text (``10-30``, ``normal=95,…``,
``1m,5m``) and raises ``ConfigError`` with one line saying what is wrong and
what is expected. The option table (``loadkit.options``) names, for each
option, which parser reads it and which ``HarnessSettings`` field it sets;
nothing else calls these with an option's value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any

from loadkit.errors import ConfigError
from loadkit.streams import Rng

#: Misbehaving guests (the seed thread's mistakes) and what each does.
#: ``expects``: the outcomes the behaviour is meant to provoke; a session of
#: that behaviour ending so is counted in ``sessions.expected``. A behaviour
#: that expects a drop (idle timeout, repeated rate-limit violations) has its
#: drops counted apart too (``expected_drops``; see loadkit.session.base), so a gate
#: can ask for the ends nobody asked for (``outcome.auth_refused.unexpected.rate``)
#: instead of one that a random draw of the mix can breach on a healthy gateway.
_REFUSED = ("auth_refused", "auth_timeout")  # a wrong auth frame: refused, or ignored until the deadline
BEHAVIOURS: dict[str, dict[str, Any]] = {
    "normal": {},
    "no_keepalive": {"keepalive": False, "messages": False,                        # the idle timeout kills it
                     "expects": ("dropped_by_server",)},
    "wrong_case": {"auth_style": "wrong_case", "expects": _REFUSED},                # {"type":"Auth"}
    "command_auth": {"auth_style": "command", "expects": _REFUSED},                 # {"command":"auth",...}
    "bad_token": {"auth_style": "bad_token", "expects": _REFUSED},
    "no_auth": {"auth_style": "none", "expects": ("auth_timeout",)},                # never authenticates
    "fast_messages": {"message_interval": (0.02, 0.05), "honour_retry_after": False,
                      "expects": ("dropped_by_server",)},                          # ignores retryAfter: closed 4029
}


@dataclass(frozen=True, slots=True)
class Behaviour:
    name: str = "normal"
    auth_style: str = "normal"
    keepalive: bool = True
    messages: bool = True
    message_interval: tuple[float, float] | None = None
    honour_retry_after: bool = True
    expects: tuple[str, ...] = ()


def behaviour(name: str) -> Behaviour:
    return Behaviour(name=name, **BEHAVIOURS[name])


def parse_range(text: str, what: str = "value", minimum: float = 0.0) -> tuple[float, float]:
    """``"5-10"`` → (5.0, 10.0); ``"7"`` → (7.0, 7.0)."""
    raw = str(text).strip()
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:-\s*([0-9]*\.?[0-9]+)\s*)?", raw)
    if not m:
        raise ConfigError(f"{what} must be MIN-MAX in seconds (e.g. 5-10), got {raw!r}")
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) is not None else lo
    if lo > hi:
        raise ConfigError(f"{what} must be MIN-MAX with MIN <= MAX, got {raw!r}: write {m.group(2)}-{m.group(1)}")
    if lo < minimum:
        raise ConfigError(f"{what} must be at least {minimum:g}, got {raw!r}")
    return lo, hi


def parse_seconds(text: str | float, what: str = "value", positive: bool = True) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(f"{what} must be {'greater than 0' if positive else 'at least 0'}, got {text!r}")
    return value


def parse_count(text: str | int, what: str = "value") -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a whole number, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"{what} must be at least 0, got {text!r}")
    return value


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``"normal=95,no_keepalive=5"`` → weights per behaviour."""
    out: list[tuple[str, float]] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if name not in BEHAVIOURS:
            raise ConfigError(
                f"guest mix: unknown behaviour {name!r}; expected NAME=WEIGHT with NAME one of "
                + ", ".join(BEHAVIOURS)
            )
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"guest mix: weight of {name!r} must be a number, got {weight!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"guest mix: weight of {name!r} must be at least 0, got {weight!r}")
        out.append((name, w))
    if not out or sum(w for _, w in out) <= 0:
        raise ConfigError(f"guest mix must name at least one behaviour with a positive weight, got {text!r}")
    return tuple(out)


_MARK = re.compile(r"^\s*([0-9]+)\s*([smh]?)\s*$")


def parse_marks(text: str) -> tuple[int, ...]:
    """``"1m,5m,30m,60m"`` → seconds (90s, 1h and bare seconds accepted)."""
    marks = []
    for part in str(text).split(","):
        m = _MARK.match(part)
        if not m or int(m.group(1)) == 0:
            raise ConfigError(f"survival marks must be durations like 90s, 5m, 1h, got {part.strip()!r}")
        marks.append(int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)])
    return tuple(sorted(set(marks)))


def mark_label(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h" if seconds != 3600 else "60m"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True)
class HarnessSettings:
    """Everything that shapes a guest's life, with the defaults users get."""

    session_seconds: tuple[float, float] = (10.0, 30.0)
    keepalive_s: float = 20.0
    pong_timeout_s: float = 10.0
    keepalive_misses: int = 1
    message_interval: tuple[float, float] = (2.0, 5.0)
    message_chars: int = 40
    pause_between: tuple[float, float] = (0.0, 1.0)
    connect_timeout_s: float = 10.0
    auth_timeout_s: float = 15.0
    close_timeout_s: float = 2.0
    just_after_auth_s: float = 5.0
    reconnect: bool = True
    reconnect_base_s: float = 0.5
    reconnect_cap_s: float = 15.0
    reconnect_max_attempts: int = 5
    guest_mix: tuple[tuple[str, float], ...] = (("normal", 1.0),)
    survival_marks: tuple[int, ...] = (60, 300, 1800, 3600)
    seed: int | None = None

    def validate(self) -> HarnessSettings:
        if self.keepalive_s <= 0:
            raise ConfigError(f"--keepalive-interval must be greater than 0, got {self.keepalive_s:g}")
        if self.pong_timeout_s <= 0:
            raise ConfigError(f"--pong-timeout must be greater than 0, got {self.pong_timeout_s:g}")
        for name in ("session_seconds", "message_interval", "pause_between"):
            lo, hi = getattr(self, name)
            if lo < 0 or lo > hi:
                raise ConfigError(f"--{name.replace('_', '-')} must be MIN-MAX with 0 <= MIN <= MAX, got {lo:g}-{hi:g}")
        if self.reconnect_base_s <= 0 or self.reconnect_cap_s < self.reconnect_base_s:
            raise ConfigError("--reconnect-backoff must be BASE-CAP with 0 < BASE <= CAP")
        return self

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = [list(x) for x in v] if f.name == "guest_mix" else v
        return out


def backoff(attempt: int, base: float, cap: float, rng: Rng) -> float:
    """Exponential backoff with equal jitter: half of min(cap, base·2^(n-1)), plus up to as much again.

    Equal rather than full jitter so a reconnect storm still spreads out but
    no attempt hammers a restarting gateway after a near-zero pause.
    """
    delay = min(cap, base * 2.0 ** min(max(0, attempt - 1), 60))
    return delay / 2 + rng.uniform(0.0, delay / 2)
