"""Scenario files: one TOML file for Locust and loadkit, validated all at once.

Theory of operation
-------------------
``locust --config scenario.toml`` makes Locust read the file's
``[tool.locust]`` table (users, spawn rate, run time, locustfile…). The same
file's ``[tool.loadkit]`` table describes everything loadkit-specific in
sections a person can read::

    [tool.loadkit.target]      host, profile
    [tool.loadkit.lifecycle]   session_seconds, keepalive_interval, … (a guest's life)
    [tool.loadkit.mix]         behaviour = weight
    [tool.loadkit]             thresholds = ["auth.p95 < 300", …]
    [tool.loadkit.gateway]     settings of the embedded reference gateway
    [tool.loadkit.profile]     options of the chosen profile (secrets from env vars)
    [tool.loadkit.report]      report, series, html, series_interval

``load_scenario(path)`` reads and checks the whole table and raises one
``ScenarioError`` listing *every* problem, one per line, each naming the
file, the full key, the value found and what was expected (unknown keys get
a "did you mean"). Nothing is checked twice in different words: values are
validated by the same parsers the command-line options use
(``loadkit.settings``, ``loadkit.report.thresholds``, the gateway's
settings, the profile's own constructor).

The result is a ``Scenario``. ``option_values()`` are the loadkit options
as the command line would have spelt them, keyed by their argparse ``dest``
names (taken from ``loadkit.locust.options.register`` itself, so they cannot
drift), ready to fill in whatever the command line did not set:
**command line > scenario file > defaults**. ``profile_options`` are the
keyword arguments for ``get_profile``, with ``{env = "NAME"}`` values
resolved; those values are ``secrets``, which ``redact`` removes from any
text before it is printed or written.

Pure: reads one file and the environment, imports neither Locust nor gevent.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loadkit.errors import ConfigError
from loadkit.protocol.base import MISSING, Profile, ProfileOptionError, auth_styles, check_keepalive, show_value

__all__ = [
    "Problem",
    "Scenario",
    "ScenarioError",
    "SECTIONS",
    "LIFECYCLE",
    "REPORT",
    "given_on_command_line",
    "load_scenario",
    "loadkit_options",
    "redact",
]

#: The sections of ``[tool.loadkit]`` (``thresholds`` is a list, the rest tables).
SECTIONS = ("target", "lifecycle", "mix", "thresholds", "gateway", "profile", "report")

#: ``[tool.loadkit.lifecycle]`` key → (option dest, kind of value).
LIFECYCLE: dict[str, tuple[str, str]] = {
    "session_seconds": ("session_seconds", "range"),
    "keepalive_interval": ("keepalive_interval", "seconds"),
    "pong_timeout": ("pong_timeout", "seconds"),
    "message_interval": ("message_interval", "range"),
    "message_chars": ("message_chars", "count"),
    "guest_pause": ("guest_pause", "range"),
    "connect_timeout": ("connect_timeout", "seconds"),
    "auth_timeout": ("auth_timeout", "seconds"),
    "close_timeout": ("close_timeout", "seconds"),
    "just_after_auth": ("just_after_auth", "seconds0"),
    "reconnect_backoff": ("reconnect_backoff", "backoff"),
    "reconnect_max_attempts": ("reconnect_max_attempts", "count"),
    "survival_marks": ("survival_marks", "marks"),
    "seed": ("loadkit_seed", "count"),
}

#: ``[tool.loadkit.report]`` key → (option dest, kind of value).
REPORT: dict[str, tuple[str, str]] = {
    "report": ("loadkit_report", "path"),
    "series": ("loadkit_series", "path"),
    "html": ("loadkit_html", "path"),
    "junit": ("loadkit_junit", "path"),
    "series_interval": ("series_interval", "seconds"),
}

_TARGET_KEYS = ("host", "profile")

_EXPECTED = {
    "range": 'MIN-MAX seconds with 0 <= MIN <= MAX, written "10-30", [10, 30] or one number',
    "backoff": 'BASE-CAP seconds with 0 < BASE <= CAP, written "0.5-15" or [0.5, 15]',
    "seconds": "a number of seconds greater than 0",
    "seconds0": "a number of seconds, 0 or more",
    "count": "a whole number, 0 or more",
    "marks": 'session ages like "1m,5m,30m,60m" or ["90s", "1h"] (bare numbers are seconds)',
    "path": "a file path (a non-empty string)",
}


# -- problems ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a scenario file: where, what was found, and what would do."""

    file: str
    key: str
    value: Any
    message: str  # "expected …", "unknown key; …" or "missing; expected …"

    def __str__(self) -> str:
        if self.value is MISSING:
            return f"{self.file}: {self.key}: {self.message}"
        return f"{self.file}: {self.key} = {show_value(self.value)}: {self.message}"


class ScenarioError(ConfigError):
    """A scenario file that cannot be used: every problem, one per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and its URL-quoted form) replaced by ``<secret>``."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.add(secret)
            forms.add(quote(secret, safe=""))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<secret>")
    return text


# -- the scenario -------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Scenario:
    """A validated scenario file."""

    path: str
    #: ``[tool.loadkit.target] profile``, or None (the command line's ``--protocol`` or its default)
    profile: str | None = None
    #: ``[tool.loadkit.target] host``, or None (Locust's ``--host``, or the embedded gateway)
    host: str | None = None
    values: Mapping[str, str | list[str]] = field(default_factory=dict)
    #: keyword arguments for ``get_profile(profile, **profile_options)``, env values resolved
    profile_options: Mapping[str, Any] = field(default_factory=dict)
    #: values never to print: every value taken from the environment, the gateway's secret
    secrets: frozenset[str] = frozenset()
    #: the file's ``[tool.locust]`` table, as Locust reads it
    locust: Mapping[str, Any] = field(default_factory=dict)

    def option_values(self) -> dict[str, str | list[str]]:
        """loadkit's options as the command line spells them, by argparse dest.

        Text for single values ("10-30", "20", "normal=95,no_keepalive=5"), lists
        for the repeatable ``threshold`` and ``gateway_set``; ``protocol`` and
        Locust's own ``host`` when the file sets them. Only what the file sets.
        """
        return {k: list(v) if isinstance(v, list) else v for k, v in self.values.items()}

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def apply_to(self, namespace: Any, given: Iterable[str] = ()) -> list[str]:
        """Set each file value on ``namespace`` unless its dest is in ``given``; the dests set.

        ``given`` are the dests the command line (or the environment) set:
        they win over the file. See ``given_on_command_line``.
        """
        skip = set(given)
        applied = []
        for dest, value in self.option_values().items():
            if dest not in skip:
                setattr(namespace, dest, value)
                applied.append(dest)
        return applied

    def make_profile(self, name: str | None = None) -> Profile:
        """The profile ``name`` (default: the file's), with the file's options if it is the file's."""
        from loadkit.protocol import get_profile

        chosen = name or self.profile or "guest"
        options = dict(self.profile_options) if chosen == (self.profile or "guest") else {}
        return get_profile(chosen, **options)

    def __repr__(self) -> str:
        return (f"Scenario(path={self.path!r}, profile={self.profile!r}, host={self.host!r}, "
                f"options={sorted(self.values)}, profile_options={sorted(self.profile_options)}, "
                f"secrets={len(self.secrets)})")


# -- loadkit's options, from the plugin's own registration --------------------------------------------


class _Recorder:
    """Stands in for Locust's parser: records what ``options.register`` adds."""

    def __init__(self) -> None:
        self.actions: dict[str, argparse.Action] = {}
        self._parser = argparse.ArgumentParser(add_help=False)

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        for extra in ("include_in_web_ui", "is_secret", "is_required", "is_multiple", "env_var"):
            kwargs.pop(extra, None)
        action = self._parser.add_argument(*flags, **kwargs)
        self.actions[action.dest] = action


def loadkit_options() -> dict[str, argparse.Action]:
    """loadkit's command-line options by dest (flags in ``option_strings``, ``default``)."""
    from loadkit.locust import options

    rec = _Recorder()
    options.register(rec)
    return rec.actions


def given_on_command_line(argv: Sequence[str], actions: Mapping[str, argparse.Action] | None = None) -> set[str]:
    """The dests of the options that appear in ``argv`` (``--x v`` or ``--x=v``).

    For ``Scenario.apply_to``: what the command line set wins over the file.
    ``actions`` default to loadkit's options; pass Locust's parser actions
    (by dest) to include ``host`` (``-H``/``--host``) and the like.
    """
    actions = loadkit_options() if actions is None else actions
    flags = {flag: dest for dest, action in actions.items() for flag in action.option_strings}
    given = set()
    for token in argv:
        flag = token.split("=", 1)[0] if token.startswith("--") else token
        if flag in flags:
            given.add(flags[flag])
    return given


# -- loading ---------------------------------------------------------------------------------------------


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate ``path``; raise ``ScenarioError`` listing every problem.

    A file that does not end in ``.toml`` (a ``locust.conf``) has no loadkit
    table: an empty ``Scenario``. A ``.toml`` without ``[tool.loadkit]`` is
    fine too (only ``[tool.locust]`` then matters).
    """
    name = os.fspath(path)
    if not name.endswith(".toml"):
        return Scenario(name)
    try:
        with open(name, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ScenarioError([Problem(name, "file", MISSING, f"cannot be read: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([Problem(name, "file", MISSING, f"is not valid TOML: {exc}")]) from None
    return _Loader(name, data, os.environ).load()


class _Loader:
    def __init__(self, path: str, data: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.path = path
        self.data = data
        self.environ = environ
        self.problems: list[Problem] = []
        self.values: dict[str, str | list[str]] = {}
        self.keys: dict[str, str] = {}  # dest -> the file's key that set it
        self.secrets: set[str] = set()

    def set(self, dest: str, value: str | list[str], key: str) -> None:
        self.values[dest] = value
        self.keys[dest] = key

    def problem(self, key: str, value: Any, message: str) -> None:
        self.problems.append(Problem(self.path, key, value, message))

    def load(self) -> Scenario:
        tool = self.data.get("tool", {})
        locust = tool.get("locust", {}) if isinstance(tool, dict) else {}
        table = tool.get("loadkit", MISSING) if isinstance(tool, dict) else MISSING
        if table is MISSING:
            return Scenario(self.path, locust=locust if isinstance(locust, dict) else {})
        if not isinstance(table, dict):
            raise ScenarioError([Problem(self.path, "tool.loadkit", table, "expected a table: [tool.loadkit]")])
        self.unknown(table, SECTIONS, "tool.loadkit")
        profile, host = self.target(table.get("target", {}))
        self.lifecycle(table.get("lifecycle", {}))
        self.mix(table.get("mix", MISSING))
        self.thresholds(table.get("thresholds", MISSING))
        self.gateway(table.get("gateway", MISSING), host)
        self.report(table.get("report", {}))
        options = self.profile(table.get("profile", {}), profile or "guest")
        self.conflicts(locust)
        if not self.problems:
            self.whole(options, profile or "guest")
        if self.problems:
            raise ScenarioError(self.problems)
        return Scenario(self.path, profile, host, self.values, options, frozenset(self.secrets),
                        locust if isinstance(locust, dict) else {})

    # -- helpers -------------------------------------------------------------------------------

    def unknown(self, table: Mapping[str, Any], known: Sequence[str], prefix: str) -> None:
        for key, value in table.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f'did you mean "{close[0]}"?' if close else "expected one of " + ", ".join(known)
                self.problem(f"{prefix}.{key}", value, f"unknown key; {hint}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.problem(key, value, f"expected a table: [{key}]")
        return {}

    def resolve(self, value: Any, key: str) -> Any:
        """``{env = "NAME"[, default = "…"]}`` → the variable's value (a secret), recursively."""
        if isinstance(value, dict):
            if "env" in value and set(value) <= {"env", "default"}:
                name = value["env"]
                if not isinstance(name, str) or not name:
                    self.problem(key, value, 'expected {env = "NAME"} with the name of an environment variable')
                    return None
                if name in self.environ:
                    secret = self.environ[name]
                    if secret:
                        self.secrets.add(secret)
                    return secret
                if "default" in value:
                    return value["default"]
                self.problem(key, value, f"environment variable {name} is not set "
                             f"(set it, or give a default: {{env = \"{name}\", default = \"…\"}})")
                return None
            return {k: self.resolve(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return value

    # -- sections ------------------------------------------------------------------------------------

    def target(self, raw: Any) -> tuple[str | None, str | None]:
        from loadkit.locust.options import validate_host
        from loadkit.protocol import registry

        t = self.table(raw, "tool.loadkit.target")
        self.unknown(t, _TARGET_KEYS, "tool.loadkit.target")
        profile = t.get("profile")
        if profile is not None:
            if not isinstance(profile, str) or profile not in registry.names():
                self.problem("tool.loadkit.target.profile", profile,
                             "expected one of " + ", ".join(registry.names()))
                profile = None
            else:
                self.set("protocol", profile, "tool.loadkit.target.profile")
        host = t.get("host")
        if host is not None:
            try:
                if not isinstance(host, str):
                    raise ConfigError("")
                host = validate_host(host)
                self.set("host", host, "tool.loadkit.target.host")
            except ConfigError:
                self.problem("tool.loadkit.target.host", host,
                             "expected a gateway base URL: http(s)://HOST[:PORT] (ws/wss accepted)")
                host = None
        return profile, host

    def lifecycle(self, raw: Any) -> None:
        t = self.table(raw, "tool.loadkit.lifecycle")
        registered = loadkit_options()  # a key whose option this version lacks is unknown
        known = tuple(k for k, (dest, _kind) in LIFECYCLE.items() if dest in registered)
        self.unknown(t, known, "tool.loadkit.lifecycle")
        section = "lifecycle"
        for key, value in t.items():
            if key in known:
                dest, kind = LIFECYCLE[key]
                text = _convert(value, kind)
                if text is None:
                    self.problem(f"tool.loadkit.lifecycle.{key}", value, "expected " + _EXPECTED[kind])
                else:
                    self.set(dest, text, f"tool.loadkit.{section}.{key}")

    def report(self, raw: Any) -> None:
        t = self.table(raw, "tool.loadkit.report")
        self.unknown(t, tuple(REPORT), "tool.loadkit.report")
        section = "report"
        for key, value in t.items():
            if key in REPORT:
                dest, kind = REPORT[key]
                text = _convert(value, kind)
                if text is None:
                    self.problem(f"tool.loadkit.report.{key}", value, "expected " + _EXPECTED[kind])
                else:
                    self.set(dest, text, f"tool.loadkit.{section}.{key}")

    def mix(self, raw: Any) -> None:
        from loadkit.settings import BEHAVIOURS

        if raw is MISSING:
            return
        t = self.table(raw, "tool.loadkit.mix")
        self.unknown(t, tuple(BEHAVIOURS), "tool.loadkit.mix")
        parts = []
        for name, weight in t.items():
            if name not in BEHAVIOURS:
                continue
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0 or weight != weight:
                self.problem(f"tool.loadkit.mix.{name}", weight, "expected a weight: a number, 0 or more")
                continue
            parts.append((name, weight))
        if t and not self.problems_under("tool.loadkit.mix") and not any(w > 0 for _n, w in parts):
            self.problem("tool.loadkit.mix", t, "expected at least one behaviour with a weight above 0")
        if parts:
            self.set("guest_mix", ",".join(f"{n}={_number(w)}" for n, w in parts), "tool.loadkit.mix")

    def problems_under(self, prefix: str) -> bool:
        return any(p.key == prefix or p.key.startswith(prefix + ".") for p in self.problems)

    def thresholds(self, raw: Any) -> None:
        from loadkit.report import thresholds

        if raw is MISSING:
            return
        if not isinstance(raw, list):
            self.problem("tool.loadkit.thresholds", raw, 'expected an array of expressions, e.g. ["auth.p95 < 300"]')
            return
        good = []
        for i, expr in enumerate(raw):
            key = f"tool.loadkit.thresholds[{i}]"
            if not isinstance(expr, str):
                self.problem(key, expr, 'expected an expression string, e.g. "auth.p95 < 300"')
                continue
            try:
                thresholds.parse(expr)
            except thresholds.ThresholdError as exc:
                self.problem(key, expr, exc.problem)
                continue
            good.append(expr)
        self.set("threshold", good, "tool.loadkit.thresholds")

    def gateway(self, raw: Any, host: str | None) -> None:
        from loadkit.gateway.settings import SettingsError, load_settings

        if raw is MISSING:
            return
        t = self.table(raw, "tool.loadkit.gateway")
        if t and host is not None:
            self.problem("tool.loadkit.gateway", MISSING, "unused: the embedded gateway only starts when no "
                         "host is given, and tool.loadkit.target.host is set")
        assignments = []
        for key, value in _flatten(t):
            full = f"tool.loadkit.gateway.{key}"
            resolved = self.resolve(value, full)
            if resolved is None:
                continue
            if key == "secret" and isinstance(resolved, str) and resolved:
                self.secrets.add(resolved)
            text = _gateway_text(resolved)
            if text is None:
                self.problem(full, value, "expected a string, number, boolean or array of them")
                continue
            assignment = f"{key}={text}"
            try:
                load_settings(None, [assignment])
            except SettingsError as exc:
                self.problem(full, value, _settings_message(str(exc), key))
                continue
            assignments.append(assignment)
        if assignments and not self.problems_under("tool.loadkit.gateway"):
            try:
                load_settings(None, assignments)
            except SettingsError as exc:  # a rule across several settings
                self.problem("tool.loadkit.gateway", t, _settings_message(str(exc), ""))
        self.set("gateway_set", assignments, "tool.loadkit.gateway")

    def profile(self, raw: Any, name: str) -> dict[str, Any]:
        t = self.table(raw, "tool.loadkit.profile")
        return {k: self.resolve(v, f"tool.loadkit.profile.{k}") for k, v in t.items()}

    def conflicts(self, locust: Any) -> None:
        """An option set in both tables: say which one to keep."""
        if not isinstance(locust, dict):
            return
        for key, value in locust.items():
            dest = key.replace("-", "_")
            if dest in self.values:
                self.problem(f"tool.locust.{key}", value, f"set twice: also {self.keys[dest]}; keep one of them")

    def whole(self, options: dict[str, Any], name: str) -> None:
        """Checks across sections, once each section is valid on its own."""
        from loadkit.locust.options import settings_from
        from loadkit.protocol import registry
        from loadkit.settings import BEHAVIOURS

        actions = loadkit_options()
        ns = argparse.Namespace(**{dest: a.default for dest, a in actions.items()})
        for dest, value in self.values.items():
            setattr(ns, dest, value)
        try:
            settings = settings_from(ns)
        except ConfigError as exc:
            self.problem("tool.loadkit.lifecycle", MISSING, str(exc))
            return
        try:
            profile = registry.create(name, **options)
        except ProfileOptionError as exc:
            for key, value, expected in exc.problems:
                message = expected if expected.startswith("unknown") else f"expected {expected}"
                if value is MISSING:
                    message = f"missing; expected {expected}"
                self.problem(f"tool.loadkit.profile.{key}", value, message)
            return
        except ConfigError as exc:
            self.problem("tool.loadkit.profile", MISSING, str(exc))
            return
        lifecycle = self.data["tool"]["loadkit"].get("lifecycle", {})
        try:
            check_keepalive(profile, settings.keepalive_s)
        except ConfigError as exc:
            value = lifecycle.get("keepalive_interval", MISSING) if isinstance(lifecycle, dict) else MISSING
            detail = str(exc).split(": set --", 1)[0]
            minimum = getattr(profile, "min_keepalive_s", 0)
            fix = f"expected at least {minimum:g} for the {name} profile ({detail})"
            if value is MISSING:
                fix = (f"missing; the default {settings.keepalive_s:g} s is too short for the {name} profile: "
                       f"set keepalive_interval = {minimum:g} or more ({detail})")
            self.problem("tool.loadkit.lifecycle.keepalive_interval", value, fix)
        styles = auth_styles(profile)
        mix = self.data["tool"]["loadkit"].get("mix", {})
        for behaviour, weight in settings.guest_mix:
            style = BEHAVIOURS[behaviour].get("auth_style", "normal")
            if weight > 0 and style not in styles:
                self.problem(f"tool.loadkit.mix.{behaviour}", mix.get(behaviour, weight),
                             f"expected a behaviour the {name} profile can play: it cannot write the "
                             f"\"{style}\" auth style (it writes {', '.join(styles)})")


# -- value conversion: TOML values to the text the command line takes ----------------------------------


def _number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _convert(value: Any, kind: str) -> str | None:
    """The command-line text for a TOML value of ``kind``, or None if it is not one."""
    from loadkit.settings import parse_count, parse_marks, parse_range, parse_seconds

    try:
        if kind in ("range", "backoff"):
            if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
                text = f"{_number(value[0])}-{_number(value[1])}"
            elif _is_number(value):
                text = _number(value)
            elif isinstance(value, str):
                text = value.strip()
            else:
                return None
            lo, _hi = parse_range(text)
            if kind == "backoff" and lo <= 0:
                return None
            return text
        if kind in ("seconds", "seconds0"):
            if _is_number(value):
                text = _number(value)
            elif isinstance(value, str):
                text = value.strip()
            else:
                return None
            parse_seconds(text, positive=kind == "seconds")
            return text
        if kind == "count":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                return None
            text = str(value).strip()
            parse_count(text)
            return text
        if kind == "marks":
            if isinstance(value, list) and value and all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                         for v in value):
                text = ",".join(str(v) for v in value)
            elif isinstance(value, str):
                text = value
            else:
                return None
            parse_marks(text)
            return text
        if kind == "path":
            return value if isinstance(value, str) and value.strip() else None
    except ConfigError:
        return None
    raise AssertionError(kind)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{faults = {drop_fraction = 0.1}}`` → [("faults.drop_fraction", 0.1)]; env tables stay whole."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict) and not ("env" in value and set(value) <= {"env", "default"}):
            if value:
                out.extend(_flatten(value, f"{prefix}{key}."))
            else:
                out.append((f"{prefix}{key}", value))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _gateway_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return _number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ",".join(_number(v) if _is_number(v) else str(v) for v in value)
    return None


_MUST = re.compile(r"^(?:setting '[^']*' )?must be (.*?)(?:, got .*)?$")
_NAMED_MUST = re.compile(r"^(?:[\w.]+ )must be (.*?)(?: \(got .*\))?$")
_UNKNOWN = re.compile(r"^unknown setting '([^']*)'; (?:did you mean '([^']*)'\?|known settings: (.*))$")


def _settings_message(message: str, key: str) -> str:
    """The gateway's own one-line message, reworded as "expected …" when it says "must be"."""
    m = _UNKNOWN.match(message)
    if m:
        if m.group(2):
            return f'unknown key; did you mean "tool.loadkit.gateway.{m.group(2)}"?'
        return "unknown key; expected one of " + (m.group(3) or "")
    m = _MUST.match(message) or _NAMED_MUST.match(message)
    if m:
        return f"expected {m.group(1)}"
    return message
