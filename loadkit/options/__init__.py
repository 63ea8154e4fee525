"""The option table: every loadkit option, declared once.

Everything else is derived from ``OPTIONS``:

- the Locust options (command line, environment, Locust config files, the
  web UI form): ``loadkit.locust.options.register`` adds one argument per
  entry, with the entry's flag, default, help and parser;
- the scenario file's ``[tool.loadkit.*]`` keys: an entry with a ``key``
  (``"lifecycle.session_seconds"``) is that key, its TOML value checked by
  the same parser (``loadkit.config``);
- ``HarnessSettings`` and the typed ``LoadkitOptions`` a run uses:
  ``resolve`` parses each value once and builds both;
- the README's option table: ``markdown_table()`` (a test keeps the README
  equal to it).

The kinds of value (each option's parser, its TOML conversion and the
words of its "expected …") are in ``loadkit.options.kinds``.

Values as text, parsed once
---------------------------
An option's value lives in Locust's namespace as text, because the web UI
shows and edits it as typed and a master ships it to its workers as text.
The parser turns the text into an ``OptionText``: still the ``str`` the user
wrote, carrying the parsed value (``.value``). Whoever reads it later
(``resolve``) takes that value instead of parsing again; text that arrives
without one (the web UI's form, a worker's spawn message) is parsed then,
once. A bad value raises ``ConfigError`` (one line, naming the option, the
value found and what was expected), rendered at the edges: argparse prints
it and exits 2 (``type=``), the plugin prints it and exits 2 (``init``).

No validation library
---------------------
msgspec, pydantic and cattrs check a value's *type*; every loadkit value is
a small text grammar (``10-30``, ``normal=95,no_keepalive=5``, ``1m,5m``,
``auth.p95 < 300``) that arrives as text from three of its four sources.
Each parser here is a dozen lines with the wording users read; a library
would check the TOML types we check in one line and leave the grammar and
the messages to us, for a new dependency. Pure: no I/O, no Locust.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from loadkit.errors import ConfigError
from loadkit.options.kinds import (
    BACKOFF,
    COUNT,
    FLAG,
    GATEWAY_SET,
    MARKS,
    MILLISECONDS,
    MIX,
    PATH,
    PERCENT,
    PORT,
    PROFILE,
    RANGE,
    SECONDS,
    SECONDS0,
    SEED,
    SHARE,
    TEXT,
    THRESHOLD,
    UNPARSED,
    Kind,
    OptionText,
    is_number,
    number_text,
)
from loadkit.report.harness import DEFAULT_LAG_LIMIT_MS
from loadkit.settings import HarnessSettings

__all__ = [
    "BY_DEST",
    "FLAG",
    "BY_KEY",
    "OPTIONS",
    "Kind",
    "LoadkitOptions",
    "Option",
    "OptionText",
    "defaults",
    "from_toml",
    "is_number",
    "markdown_table",
    "number_text",
    "parse_text",
    "resolve",
    "validate_host",
]


# -- the table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One loadkit option: everything every place that knows it needs."""

    flag: str
    kind: Kind
    #: the default as the command line would spell it ("" = not set); a bool for a flag, [] repeatable
    default: str | bool | list[str]
    #: ``--help`` and the web UI form (prefixed "loadkit: ")
    help: str
    #: README: the value's placeholder and "what it sets"; the default column if not the default itself
    metavar: str = ""
    doc: str = ""
    doc_default: str = ""
    #: ``[tool.loadkit]`` key (``section.key``) that sets it in a scenario file; "" = none of its own
    key: str = ""
    #: repeatable (``action="append"``); each item parsed on its own
    multiple: bool = False
    #: a field of Locust's web UI form
    web_ui: bool = True
    #: the ``HarnessSettings`` fields it sets: a field name, or a function of its value
    settings: str | Callable[[Any], dict[str, Any]] | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


def _reconnect_backoff(value: tuple[float, float]) -> dict[str, Any]:
    return {"reconnect_base_s": value[0], "reconnect_cap_s": value[1]}


def _reconnect_attempts(value: int) -> dict[str, Any]:
    return {"reconnect": value > 0, "reconnect_max_attempts": value}


OPTIONS: tuple[Option, ...] = (
    Option("--protocol", PROFILE, "guest", "protocol profile of the target (Locust already owns --profile)",
           "NAME", "the target's protocol profile (`guest`, `webmessaging`, `custom`)", key="target.profile"),
    Option("--session-seconds", RANGE, "10-30", "how long a guest stays after auth, MIN-MAX seconds",
           "MIN-MAX", "how long a guest stays after auth (drawn per guest)", key="lifecycle.session_seconds",
           settings="session_seconds"),
    Option("--keepalive-interval", SECONDS, "20", "seconds between keepalive pings",
           "S", "seconds between keepalive pings", key="lifecycle.keepalive_interval", settings="keepalive_s"),
    Option("--pong-timeout", SECONDS, "10", "seconds to wait for a pong before the link counts as dead",
           "S", "a ping unanswered this long ends the session as `keepalive_timeout`",
           key="lifecycle.pong_timeout", settings="pong_timeout_s"),
    Option("--message-interval", RANGE, "2-5", "think time between chat messages, MIN-MAX seconds",
           "MIN-MAX", "think time between chat messages", key="lifecycle.message_interval",
           settings="message_interval"),
    Option("--message-chars", COUNT, "40", "characters per chat message",
           "N", "message length", key="lifecycle.message_chars", settings="message_chars"),
    Option("--guest-pause", RANGE, "0-1", "pause between one guest's end and the next guest, MIN-MAX seconds",
           "MIN-MAX", "pause before a user starts its next guest", key="lifecycle.guest_pause",
           settings="pause_between"),
    Option("--connect-timeout", SECONDS, "10", "seconds for TCP, TLS and the upgrade",
           "S", "TCP + TLS + upgrade", key="lifecycle.connect_timeout", settings="connect_timeout_s"),
    Option("--auth-timeout", SECONDS, "15", "seconds to wait for the auth answer",
           "S", "waiting for the auth answer", key="lifecycle.auth_timeout", settings="auth_timeout_s"),
    Option("--close-timeout", SECONDS, "2", "seconds to wait for the server's answer to our close frame",
           "S", "waiting for the server's answer to our close frame", key="lifecycle.close_timeout",
           settings="close_timeout_s"),
    Option("--just-after-auth", SECONDS0, "5", "a session ending this soon after auth counts as 'just after auth'",
           "S", "a session ending this soon after auth is in phase `just_after_auth`",
           key="lifecycle.just_after_auth", settings="just_after_auth_s"),
    Option("--reconnect-backoff", BACKOFF, "0.5-15", "reconnect backoff BASE-CAP seconds (exponential, jittered)",
           "BASE-CAP", "exponential backoff with jitter after a drop", key="lifecycle.reconnect_backoff",
           settings=_reconnect_backoff),
    Option("--reconnect-max-attempts", COUNT, "5", "reconnect attempts after a drop (0: never reconnect)",
           "N", "reconnects after a drop (0: none)", key="lifecycle.reconnect_max_attempts",
           settings=_reconnect_attempts),
    Option("--guest-mix", MIX, "normal=100",
           "behaviours and weights, e.g. normal=95,no_keepalive=2,wrong_case=2,fast_messages=1",
           "NAME=W,…", "misbehaving guests, below", settings="guest_mix"),
    Option("--survival-marks", MARKS, "1m,5m,30m,60m", "session ages to report survival for",
           "LIST", "session ages to report survival for", key="lifecycle.survival_marks",
           settings="survival_marks"),
    Option("--loadkit-seed", SEED, "", "seed for guests' random choices (empty: random)",
           "N", "makes guests' random choices repeatable; the report records the seed used (`run.seed`), "
           "so any run can be replayed", "random", key="lifecycle.seed", settings="seed"),
    Option("--lag-limit", MILLISECONDS, number_text(DEFAULT_LAG_LIMIT_MS),
           "generator lag p99 in ms above which the run is invalid (the harness was too busy)",
           "MS", "generator lag p99 (timers firing late inside the harness) above which the run is `invalid`: "
           "the harness, not the target, was slow (`report.harness`, docs/report-schema.md)"),
    Option("--loadkit-report", PATH, "", "write the JSON report here when the run is over",
           "PATH", "JSON report, written when the run is wholly over", "–", key="report.report"),
    Option("--loadkit-series", PATH, "", "append one JSON line per window here",
           "PATH", "time series, one JSON line per window, flushed as it closes", "–", key="report.series"),
    Option("--series-interval", SECONDS, "10", "seconds per time-series window",
           "S", "window length", key="report.series_interval"),
    Option("--loadkit-html", PATH, "", "write a self-contained HTML report here",
           "PATH", "self-contained HTML report", "–", key="report.html"),
    Option("--loadkit-junit", PATH, "", "write JUnit XML here (one test case per threshold and per validity check)",
           "PATH", "JUnit XML for CI: one test case per threshold (not measured: skipped) and per validity check",
           "–", key="report.junit"),
    Option("--threshold", THRESHOLD, [], "pass/fail gate, e.g. 'auth.p95 < 300' (repeatable)",
           "EXPR", 'pass/fail gate, repeatable: `--threshold "auth.p95 < 300"`', "–", multiple=True),
    Option("--abort-on-breach", FLAG, False,
           "stop the run early on a breach: a settled one at once, any other once sustained for --breach-grace",
           "", "stop early when a threshold is breached", "off"),
    Option("--breach-grace", SECONDS0, "30",
           "seconds an unsettled breach must last before --abort-on-breach stops the run",
           "S", "seconds before `--abort-on-breach` may act"),
    Option("--saturation-limit", SHARE, "0.2",
           "share of the run a harness process may spend above --saturation-cpu before the run is invalid",
           "SHARE", "share of CPU samples (every 2 s) a harness process may spend above `--saturation-cpu`"),
    Option("--saturation-cpu", PERCENT, "90", "CPU percent above which a harness process counts as saturated",
           "PERCENT", "CPU use that counts as saturated"),
    Option("--tls-ca", TEXT, "", "PEM file of CA certificates to verify an https:// target with",
           "FILE", "CA certificates for verifying an `https://` target", "system CAs"),
    Option("--gateway-set", GATEWAY_SET, [], "KEY=VALUE setting for the embedded gateway (repeatable)",
           "KEY=VALUE", "a setting of the embedded gateway (repeatable)", "–", multiple=True),
    Option("--loadkit-metrics-port", PORT, "",
           "serve Prometheus /metrics on this port (headless runs; the web UI has /metrics)",
           "PORT", "Prometheus `/metrics` on its own port (headless runs; the web UI serves `/metrics` on its port)",
           "–", web_ui=False),
    Option("--loadkit-metrics-host", TEXT, "127.0.0.1",
           "address for --loadkit-metrics-port (loopback by default; 0.0.0.0 to widen)",
           "HOST", "address for `--loadkit-metrics-port` (`0.0.0.0` to let another machine scrape)", web_ui=False),
)

BY_DEST: dict[str, Option] = {o.dest: o for o in OPTIONS}
#: scenario-file key ("lifecycle.session_seconds") → option
BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS if o.key}


# -- parsing and resolving ----------------------------------------------------------------------------


def parse_text(option: Option, text: str | bool) -> OptionText | bool:
    """One value of ``option`` from its text (argparse's ``type=``); ConfigError if bad."""
    if isinstance(text, bool):
        return text
    if isinstance(text, OptionText) and text.value is not UNPARSED:
        return text
    return OptionText(str(text), option.kind.parse(str(text), option.flag))


def from_toml(option: Option, value: object) -> OptionText | None:
    """A scenario file's value for ``option`` as parsed text; None if it is not one (see ``kind.expected``)."""
    text = option.kind.from_toml(value)
    if text is None:
        return None
    try:
        return OptionText(text, option.kind.parse(text, option.flag))
    except ConfigError:
        return None


def _value(option: Option, raw: Any) -> Any:
    if option.multiple:
        items = [] if raw is None else [raw] if isinstance(raw, str) else list(raw)
        return tuple(_one(option, item) for item in items if str(item).strip())
    return _one(option, raw)


def _one(option: Option, raw: Any) -> Any:
    if option.kind is FLAG:
        return bool(raw) if isinstance(raw, bool) or raw is None else FLAG.parse(str(raw), option.flag)
    parsed = parse_text(option, "" if raw is None else raw)
    return parsed.value if isinstance(parsed, OptionText) else parsed


def defaults() -> dict[str, str | bool | list[str]]:
    """Every option's default, by dest, as the command line spells it."""
    return {o.dest: list(o.default) if isinstance(o.default, list) else o.default for o in OPTIONS}


@dataclass(frozen=True)
class LoadkitOptions:
    """Every loadkit option, typed: what a run uses (``resolve`` builds it)."""

    settings: HarnessSettings
    protocol: str = "guest"
    loadkit_report: str = ""
    loadkit_series: str = ""
    series_interval: float = 10.0
    loadkit_html: str = ""
    loadkit_junit: str = ""
    threshold: tuple[str, ...] = ()
    abort_on_breach: bool = False
    breach_grace: float = 30.0
    saturation_limit: float = 0.2
    saturation_cpu: float = 90.0
    lag_limit: float = DEFAULT_LAG_LIMIT_MS
    tls_ca: str = ""
    loadkit_metrics_port: int = 0
    loadkit_metrics_host: str = "127.0.0.1"
    gateway_set: tuple[str, ...] = ()
    #: dest → typed value, for every option (also those that only shape ``settings``)
    values: Mapping[str, Any] = field(default_factory=dict)


_OWN_FIELDS = {f.name for f in fields(LoadkitOptions)} - {"settings", "values"}


def resolve(values: Mapping[str, Any]) -> LoadkitOptions:
    """Typed options from text values by dest (a Locust namespace's ``vars``); ConfigError if bad.

    Each value is parsed at most once: an ``OptionText`` that carries its
    value is not parsed again. A dest missing from ``values`` takes its
    default. Checks across options (``HarnessSettings.validate``) run last.
    """
    typed: dict[str, Any] = {}
    for option in OPTIONS:
        raw = values.get(option.dest, option.default)
        typed[option.dest] = _value(option, raw)
    harness: dict[str, Any] = {}
    for option in OPTIONS:
        if isinstance(option.settings, str):
            harness[option.settings] = typed[option.dest]
        elif option.settings is not None:
            harness.update(option.settings(typed[option.dest]))
    settings = HarnessSettings(**harness).validate()
    return LoadkitOptions(settings=settings, values=typed,
                          **{dest: typed[dest] for dest in _OWN_FIELDS})


def validate_host(host: str) -> str:
    """A gateway base URL: ``http(s)://host[:port][/prefix]`` (ws/wss accepted); ConfigError if not."""
    try:
        parts = urlsplit(host)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"--host {host!r} is not a gateway base URL: expected http://HOST[:PORT] or https://HOST[:PORT]"
        )
    return host.rstrip("/")


# -- the README's table -------------------------------------------------------------------------------


def markdown_table(options: Iterable[Option] = OPTIONS) -> str:
    """The README's option table, one row per option."""
    rows = ["| option | default | what it sets |", "|---|---|---|"]
    for o in options:
        flag = f"`{o.flag} {o.metavar}`" if o.metavar else f"`{o.flag}`"
        default = o.doc_default or (f"`{o.default}`" if o.default not in ("", [], False) else "–")
        rows.append(f"| {flag} | {default} | {o.doc or o.help} |")
    return "\n".join(rows) + "\n"
