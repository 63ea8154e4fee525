"""Validation of a scenario file's ``[tool.loadkit]`` table: every problem found, at once.

``check_table`` walks the table section by section (see ``loadkit.config``
for the theory of operation) and raises one ``ScenarioError`` listing every
problem, each naming the file, the full key, the value found and what was
expected; values are checked by the same parsers the command-line options
use. Pure: reads the environment (``{env = "NAME"}`` values), no files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from loadkit import options as option_table
from loadkit.config.scenario import SECTIONS, Scenario
from loadkit.errors import MISSING, ConfigError, Problem, ScenarioError
from loadkit.gateway.settings import SettingsError, load_settings
from loadkit.protocol import registry
from loadkit.protocol.base import (
    ProfileOptionError,
    auth_styles,
    check_keepalive,
)
from loadkit.report import thresholds
from loadkit.settings import BEHAVIOURS

__all__ = ["check_table"]


#: ``[tool.loadkit.SECTION]`` → its keys, from the option table
def _keys(section: str) -> tuple[str, ...]:
    return tuple(k.split(".", 1)[1] for k in option_table.BY_KEY if k.startswith(section + "."))



_TARGET_KEYS = ("host", "profile")


def check_table(path: str, data: Mapping[str, Any], environ: Mapping[str, str]) -> Scenario:
    """The ``Scenario`` of a parsed TOML document; ``ScenarioError`` listing every problem."""
    return _Loader(path, data, environ).load()


class _Loader:
    def __init__(self, path: str, data: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.path = path
        self.data = data
        self.environ = environ
        self.problems: list[Problem] = []
        self.values: dict[str, str | list[option_table.OptionText]] = {}
        self.keys: dict[str, str] = {}  # dest -> the file's key that set it
        self.secrets: set[str] = set()

    def set(self, dest: str, value: str | list[option_table.OptionText], key: str) -> None:
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
        self.section(table.get("lifecycle", {}), "lifecycle")
        self.mix(table.get("mix", MISSING))
        self.thresholds(table.get("thresholds", MISSING))
        self.gateway(table.get("gateway", MISSING), host)
        self.section(table.get("report", {}), "report")
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
        t = self.table(raw, "tool.loadkit.target")
        self.unknown(t, _TARGET_KEYS, "tool.loadkit.target")
        profile = t.get("profile")
        if profile is not None:
            self.option("target", "profile", profile)
            profile = profile if "protocol" in self.values else None
        host = t.get("host")
        if host is not None:
            try:
                if not isinstance(host, str):
                    raise ConfigError("")
                host = option_table.validate_host(host)
                self.set("host", host, "tool.loadkit.target.host")
            except ConfigError:
                self.problem("tool.loadkit.target.host", host,
                             "expected a gateway base URL: http(s)://HOST[:PORT] (ws/wss accepted)")
                host = None
        return profile, host

    def option(self, section: str, key: str, value: Any) -> None:
        """``[tool.loadkit.SECTION] KEY = value`` for the table's option of that key."""
        option = option_table.BY_KEY[f"{section}.{key}"]
        parsed = option_table.from_toml(option, value)
        if parsed is None:
            self.problem(f"tool.loadkit.{section}.{key}", value, "expected " + option.kind.expected)
        else:
            self.set(option.dest, parsed, f"tool.loadkit.{section}.{key}")

    def section(self, raw: Any, section: str) -> None:
        """A section whose keys are all options of the table (lifecycle, report)."""
        t = self.table(raw, f"tool.loadkit.{section}")
        known = _keys(section)
        self.unknown(t, known, f"tool.loadkit.{section}")
        for key, value in t.items():
            if key in known:
                self.option(section, key, value)

    def mix(self, raw: Any) -> None:
        if raw is MISSING:
            return
        t = self.table(raw, "tool.loadkit.mix")
        self.unknown(t, tuple(BEHAVIOURS), "tool.loadkit.mix")
        parts = []
        for name, weight in t.items():
            if name not in BEHAVIOURS:
                continue
            if not option_table.is_number(weight) or weight < 0:
                self.problem(f"tool.loadkit.mix.{name}", weight, "expected a weight: a number, 0 or more")
                continue
            parts.append((name, weight))
        if t and not self.problems_under("tool.loadkit.mix") and not any(w > 0 for _n, w in parts):
            self.problem("tool.loadkit.mix", t, "expected at least one behaviour with a weight above 0")
        if parts:
            text = ",".join(f"{n}={option_table.number_text(w)}" for n, w in parts)
            mix = option_table.from_toml(option_table.BY_DEST["guest_mix"], text)
            if mix is not None:
                self.set("guest_mix", mix, "tool.loadkit.mix")

    def problems_under(self, prefix: str) -> bool:
        return any(p.key == prefix or p.key.startswith(prefix + ".") for p in self.problems)

    def thresholds(self, raw: Any) -> None:
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
        option = option_table.BY_DEST["threshold"]
        self.set("threshold", [option_table.OptionText(expr, expr) for expr in good], "tool.loadkit.thresholds")
        del option

    def gateway(self, raw: Any, host: str | None) -> None:
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
            assignments.append(option_table.OptionText(assignment, assignment))
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
        try:
            settings = option_table.resolve(self.values).settings
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
    if option_table.is_number(value):
        return option_table.number_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ",".join(option_table.number_text(v) if option_table.is_number(v) else str(v) for v in value)
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
