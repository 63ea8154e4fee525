"""loadkit's Locust options: registered on Locust's parser, turned into settings.

Registered directly on the parser (not an argument group: groups reject
Locust's extra keywords and the option silently goes missing). Each
``type=`` raises ``argparse.ArgumentTypeError`` so a bad value gives
``locust: error: argument --x: …`` and exit 2 before any fork, from the
command line, the environment or a config file alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from loadkit.errors import ConfigError
from loadkit.protocol import registry
from loadkit.settings import (
    HarnessSettings,
    parse_count,
    parse_marks,
    parse_mix,
    parse_range,
    parse_seconds,
)


def _typed(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            fn(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text  # keep the text: the web UI shows and edits it as typed
    convert.__name__ = fn.__name__.removeprefix("parse_")
    return convert


def _range(what: str) -> Callable[[str], Any]:
    return _typed(lambda t: parse_range(t, what))


def _seconds(what: str, positive: bool = True) -> Callable[[str], Any]:
    return _typed(lambda t: parse_seconds(t, what, positive))


def parse_lag_limit(text: str | float) -> float:
    """``--lag-limit MS``: a number of milliseconds greater than 0."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--lag-limit must be a number of milliseconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"--lag-limit must be a number of milliseconds greater than 0, got {text!r}")
    return value


def _port(text: str) -> int:
    """A TCP port for ``--loadkit-metrics-port``; empty: no metrics port."""
    if not str(text).strip():
        return 0
    port = parse_count(text, "--loadkit-metrics-port")
    if not 0 < port < 65536:
        raise ConfigError(f"--loadkit-metrics-port must be a port between 1 and 65535, got {text!r}")
    return port


def _profile(text: str) -> str:
    if text not in registry.names():
        raise argparse.ArgumentTypeError(f"unknown profile {text!r}: expected one of {', '.join(registry.names())}")
    return text


def register(parser: Any) -> None:
    add = parser.add_argument
    add("--protocol", type=_profile, default="guest",
        help="loadkit: protocol profile of the target (Locust already owns --profile)")
    add("--session-seconds", type=_range("--session-seconds"), default="10-30",
        help="loadkit: how long a guest stays after auth, MIN-MAX seconds")
    add("--keepalive-interval", type=_seconds("--keepalive-interval"), default="20",
        help="loadkit: seconds between keepalive pings")
    add("--pong-timeout", type=_seconds("--pong-timeout"), default="10",
        help="loadkit: seconds to wait for a pong before the link counts as dead")
    add("--message-interval", type=_range("--message-interval"), default="2-5",
        help="loadkit: think time between chat messages, MIN-MAX seconds")
    add("--message-chars", type=_typed(lambda t: parse_count(t, "--message-chars")), default="40",
        help="loadkit: characters per chat message")
    add("--guest-pause", type=_range("--guest-pause"), default="0-1",
        help="loadkit: pause between one guest's end and the next guest, MIN-MAX seconds")
    add("--connect-timeout", type=_seconds("--connect-timeout"), default="10",
        help="loadkit: seconds for TCP, TLS and the upgrade")
    add("--auth-timeout", type=_seconds("--auth-timeout"), default="15",
        help="loadkit: seconds to wait for the auth answer")
    add("--close-timeout", type=_seconds("--close-timeout"), default="2",
        help="loadkit: seconds to wait for the server's answer to our close frame")
    add("--just-after-auth", type=_seconds("--just-after-auth", positive=False), default="5",
        help="loadkit: a session ending this soon after auth counts as 'just after auth'")
    add("--reconnect-backoff", type=_range("--reconnect-backoff"), default="0.5-15",
        help="loadkit: reconnect backoff BASE-CAP seconds (exponential, jittered)")
    add("--reconnect-max-attempts", type=_typed(lambda t: parse_count(t, "--reconnect-max-attempts")),
        default="5", help="loadkit: reconnect attempts after a drop (0: never reconnect)")
    add("--guest-mix", type=_typed(parse_mix), default="normal=100",
        help="loadkit: behaviours and weights, e.g. normal=95,no_keepalive=2,wrong_case=2,fast_messages=1")
    add("--survival-marks", type=_typed(parse_marks), default="1m,5m,30m,60m",
        help="loadkit: session ages to report survival for")
    add("--loadkit-seed", type=_typed(lambda t: parse_count(t, "--loadkit-seed") if t.strip() else 0),
        default="",
        help="loadkit: seed for guests' random choices (empty: random)")
    add("--loadkit-report", default="", help="loadkit: write the JSON report here when the run is over")
    add("--loadkit-series", default="", help="loadkit: append one JSON line per window here")
    add("--series-interval", type=_seconds("--series-interval"), default="10",
        help="loadkit: seconds per time-series window")
    add("--loadkit-html", default="", help="loadkit: write a self-contained HTML report here")
    add("--loadkit-junit", default="",
        help="loadkit: write JUnit XML here (one test case per threshold and per validity check)")
    add("--threshold", action="append", default=[], is_multiple=True,
        help="loadkit: pass/fail gate, e.g. 'auth.p95 < 300' (repeatable)")
    add("--abort-on-breach", action="store_true", default=False,
        help="loadkit: stop the run early on a breach: a settled one at once, any other once sustained "
             "for --breach-grace")
    add("--breach-grace", type=_seconds("--breach-grace", positive=False), default="30",
        help="loadkit: seconds an unsettled breach must last before --abort-on-breach stops the run")
    add("--saturation-limit", type=_seconds("--saturation-limit", positive=False), default="0.2",
        help="loadkit: share of the run a harness process may spend above 90%% CPU before the run is invalid")
    add("--saturation-cpu", type=_seconds("--saturation-cpu"), default="90",
        help="loadkit: CPU percent above which a harness process counts as saturated")
    add("--lag-limit", type=_typed(parse_lag_limit), default="100",
        help="loadkit: generator lag p99 in ms above which the run is invalid (the harness was too busy)")
    add("--tls-ca", default="", help="loadkit: PEM file of CA certificates to verify an https:// target with")
    add("--gateway-set", action="append", default=[], is_multiple=True,
        help="loadkit: KEY=VALUE setting for the embedded gateway (repeatable)")
    add("--loadkit-metrics-port", type=_typed(_port), default="", include_in_web_ui=False,
        help="loadkit: serve Prometheus /metrics on this port (headless runs; the web UI has /metrics)")
    add("--loadkit-metrics-host", default="127.0.0.1", include_in_web_ui=False,
        help="loadkit: address for --loadkit-metrics-port (loopback by default; 0.0.0.0 to widen)")


def settings_from(opts: Any) -> HarnessSettings:
    """Validate every loadkit option (again: the web UI skips ``type=``)."""
    lo, hi = parse_range(opts.reconnect_backoff, "--reconnect-backoff")
    seed = str(getattr(opts, "loadkit_seed", "") or "").strip()
    return HarnessSettings(
        session_seconds=parse_range(opts.session_seconds, "--session-seconds"),
        keepalive_s=parse_seconds(opts.keepalive_interval, "--keepalive-interval"),
        pong_timeout_s=parse_seconds(opts.pong_timeout, "--pong-timeout"),
        message_interval=parse_range(opts.message_interval, "--message-interval"),
        message_chars=parse_count(opts.message_chars, "--message-chars"),
        pause_between=parse_range(opts.guest_pause, "--guest-pause"),
        connect_timeout_s=parse_seconds(opts.connect_timeout, "--connect-timeout"),
        auth_timeout_s=parse_seconds(opts.auth_timeout, "--auth-timeout"),
        close_timeout_s=parse_seconds(opts.close_timeout, "--close-timeout"),
        just_after_auth_s=parse_seconds(opts.just_after_auth, "--just-after-auth", positive=False),
        reconnect=parse_count(opts.reconnect_max_attempts, "--reconnect-max-attempts") > 0,
        reconnect_base_s=lo if lo > 0 else parse_seconds(lo, "--reconnect-backoff BASE"),
        reconnect_cap_s=hi,
        reconnect_max_attempts=parse_count(opts.reconnect_max_attempts, "--reconnect-max-attempts"),
        guest_mix=parse_mix(opts.guest_mix),
        survival_marks=parse_marks(opts.survival_marks),
        seed=int(seed) if seed else None,
    ).validate()


def validate_host(host: str) -> str:
    """A gateway base URL: ``http(s)://host[:port][/prefix]`` (ws/wss accepted)."""
    try:
        parts = urlsplit(host)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"--host {host!r} is not a gateway base URL: expected http://HOST[:PORT] or https://HOST[:PORT]"
        )
    del port
    return host.rstrip("/")
