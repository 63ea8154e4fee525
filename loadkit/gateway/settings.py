"""Gateway settings: every default of the guest protocol, as data.

Why a frozen dataclass with coercion from the field types: the same setting
arrives as a TOML value (typed) or as ``--set key=value`` text, and both must
end up the same, validated once, with an error that names the key and says
how to fix it. The field types are the schema; there is no second list to
drift from it.

Precedence: defaults < ``--config FILE.toml`` < each ``--set`` in order <
``--seed``. Fault settings live in the ``[faults]`` table and are set on the
command line as ``--set faults.NAME=VALUE``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from loadkit.errors import ConfigError

from .faults import Delay, FaultSettings

__all__ = ["GatewaySettings", "SettingsError", "load_settings"]


class SettingsError(ConfigError, ValueError):
    """A bad setting; its message is the one line shown to the user."""


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway's behaviour depends on. Durations are seconds."""

    token_ttl_s: float = 3600.0
    """Lifetime of an issued token; a session outliving it gets session_expired + 4006."""
    token_scopes: tuple[str, ...] = ("guest:chat",)
    """Scopes put into issued tokens; without guest:chat, auth closes 4003."""
    secret: str = ""
    """HMAC key for tokens; empty = random per process. Never shown in stats."""
    auth_deadline_s: float = 10.0
    """Time allowed between the upgrade and the auth frame (else 4008)."""
    auth_failure: Literal["silent", "explicit"] = "silent"
    """silent: a bad auth closes 1000 with no error frame; explicit: error 4001 + close 4001."""
    idle_timeout_s: float = 30.0
    """An authenticated session with no client frame for this long is closed 1001."""
    max_text_length: int = 4000
    """Longer message texts get error 4011 (the socket stays open)."""
    rate_limit_per_s: int = 5
    """Messages per session per sliding second (0 = unlimited); more get error 4029."""
    rate_limit_strikes: int = 3
    """Consecutive refusals that close the session with 4029 (0 = never close)."""
    max_frame_bytes: int = 65536
    """Larger incoming messages close the session with 1009."""
    agent_replies: bool = True
    """Send a simulated agent reply to each accepted message."""
    agent_think_s: tuple[float, float] = (0.5, 2.0)
    """The agent's think time, uniform in [min, max]."""
    token_rate_limit_per_s: float = 0.0
    """Token requests per sliding second, whole gateway (0 = unlimited); more get 429."""
    max_connections: int = 0
    """Open WebSocket sessions allowed (0 = no cap); upgrades beyond it get 503."""
    open_timeout_s: float = 10.0
    """Time allowed for an upgrade request; stalled handshakes are dropped after it."""
    close_timeout_s: float = 5.0
    """How long a closing handshake may take before the TCP connection is cut."""
    tls_cert: str = ""
    """PEM certificate (chain) file: serve HTTPS and WSS instead of HTTP and WS ("" = plain)."""
    tls_key: str = ""
    """PEM private key for tls_cert ("" = the key is in tls_cert)."""
    processes: int = 1
    """Gateway processes serving the one port (SO_REUSEPORT), as one gateway; 0 = one per
    available core. See docs/gateway.md, "Several processes"."""
    seed: int | None = None
    """Seed of the fault plan; None = random, shown in stats so a run can be repeated."""
    auth_frame: Literal["type", "command"] = "type"
    """The auth frame the guest endpoint expects: {"type":"auth",...} (the contract), or the
    seed thread's variant {"command":"auth","guestId":...,"token":...,"version":"1.0"}."""
    faults: FaultSettings = field(default_factory=FaultSettings)
    webmessaging: WebMessagingSettings = field(default_factory=lambda: WebMessagingSettings())
    """The ``[webmessaging]`` table: the Genesys Web Messaging endpoint on ``/v1``."""

    def __post_init__(self) -> None:
        positive = ("token_ttl_s", "auth_deadline_s", "idle_timeout_s", "max_text_length",
                    "max_frame_bytes", "open_timeout_s", "close_timeout_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.processes < 0:
            raise SettingsError(f"processes must be >= 0, 0 meaning one per available core (got {self.processes})")
        for name in ("rate_limit_per_s", "rate_limit_strikes", "token_rate_limit_per_s", "max_connections"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0, 0 meaning no limit (got {getattr(self, name)})")
        low, high = self.agent_think_s
        if not 0 <= low <= high:
            raise SettingsError(
                f"agent_think_s must be [min, max] with 0 <= min <= max (got {list(self.agent_think_s)})")

    def public_dict(self) -> dict[str, Any]:
        """The effective settings as JSON-ready data, without the secret."""
        data: dict[str, Any] = _to_plain(self)
        del data["secret"]
        return data


#: Close codes a setting may name (what a server may send), 0 meaning "do not close".
_SENDABLE = frozenset({1000, 1001, 1008, 1011, 1012, 1013})


def _close_code(name: str, code: int, allow_zero: bool) -> None:
    if (allow_zero and code == 0) or code in _SENDABLE or 3000 <= code <= 4999:
        return
    zero = "0 (stay open), " if allow_zero else ""
    raise ValueError(f"{name} must be {zero}1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999 (got {code})")


@dataclass(frozen=True)
class WebMessagingSettings:
    """Genesys Web Messaging on ``/v1?deploymentId=...`` (``webmessaging-protocol.md``).

    Every behaviour the public sources leave UNKNOWN is a setting here, with a
    plausible default, never a guess baked into code: idle timeout and maximum
    connection age (defaults: AWS API Gateway's 10 min and 2 h), the close codes
    and when they are sent, whether a ConnectionClosedEvent is followed by a
    close, which connection a 4th socket evicts, the text limit, and what an
    echo without a token gets.
    """

    deployments: tuple[str, ...] = ()
    """Known deploymentIds; empty = any. Others get 400 "Deployment not found"."""
    origins: tuple[str, ...] = ()
    """Allowed Origin headers; empty = any (or none). Others: the upgrade is refused with 403."""
    deployment_error_close_code: int = 1008
    """Close after "Deployment not found" (or another refused configureSession); 0 = stay open."""
    idle_timeout_s: float = 600.0
    """A socket with no client frame for this long is closed with idle_close_code; 0 = never."""
    idle_close_code: int = 1001
    max_connection_age_s: float = 7200.0
    """A socket older than this is closed with max_age_close_code; 0 = never."""
    max_age_close_code: int = 1001
    max_connections_per_token: int = 3
    """Sockets one token may hold; one more sends ConnectionClosedEvent to the evicted one."""
    evict: Literal["oldest", "newest"] = "oldest"
    """Which socket a connection over the limit evicts: the oldest, or the new one itself."""
    connection_closed_code: int = 1000
    """Close code after a ConnectionClosedEvent (eviction, closeSession of another socket); 0 = leave
    the socket open, detached from its session (it answers nothing more)."""
    max_text_length: int = 4000
    """Longer texts get {"class":"string","code":4011,"body":"message too long"}."""
    rate_limit_per_s: int = 2
    """onMessage (text, typing, presence) per session per sliding second; more get 429/4029. 0 = unlimited."""
    echo_limit_per_min: int = 2
    """echo frames per connection per sliding minute (59 s: arrival jitter); more get 429/4029. 0 = unlimited."""
    echo_without_token: Literal["answer", "error"] = "answer"
    """An echo with no token: answered like any echo, or refused with 400."""
    session_ttl_s: float = 0.0
    """A session with no request for this long expires (SessionExpiredEvent); 0 = never."""
    expired_close_code: int = 1000
    """Close code after SessionExpiredEvent; 0 = stay open (further requests get 4006)."""
    resume_window_s: float = 300.0
    """A session with no socket left is forgotten after this long: its token then starts a new one."""

    def __post_init__(self) -> None:
        for name in ("idle_timeout_s", "max_connection_age_s", "session_ttl_s", "rate_limit_per_s",
                     "echo_limit_per_min", "resume_window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, 0 meaning never / no limit (got {getattr(self, name)})")
        for name in ("max_connections_per_token", "max_text_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)})")
        for name in ("deployment_error_close_code", "connection_closed_code", "expired_close_code"):
            _close_code(name, getattr(self, name), allow_zero=True)
        for name in ("idle_close_code", "max_age_close_code"):
            _close_code(name, getattr(self, name), allow_zero=False)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, Delay):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Delay):
        return str(value)
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


# --- coercion from TOML values and --set text to the field types ----------

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])} (comma-separated on the command line)"
        return f"[{', '.join(_describe(a) for a in args)}] (\"a,b\" on the command line)"
    if tp is type(None):
        return "none"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            Delay: "a delay such as 25, 'fixed:25' or 'lognormal:40,400'"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Convert ``value`` to type ``tp`` or raise ValueError. Text is accepted for every type."""
    origin = typing.get_origin(tp)
    if tp is Delay:
        return Delay.parse(value)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(tp):
            try:
                return _coerce(value, member)
            except ValueError:
                continue
        raise ValueError
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        raise ValueError
    if origin is Literal:
        for choice in typing.get_args(tp):
            try:
                candidate = _coerce(value, type(choice))
            except ValueError:
                continue
            if candidate == choice:
                return choice
        raise ValueError
    if origin is tuple:
        args = typing.get_args(tp)
        items = value
        if isinstance(value, str):
            items = [part.strip() for part in value.strip().strip("[]").split(",") if part.strip()]
        if not isinstance(items, (list, tuple)):
            raise ValueError
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0]) for item in items)
        if len(items) != len(args):
            raise ValueError
        return tuple(_coerce(item, arg) for item, arg in zip(items, args, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError
    if isinstance(value, bool):
        raise ValueError  # a TOML true is not a number, nor a string
    if tp is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError
    if tp is float:
        if isinstance(value, (int, float, str)):
            number = float(value.strip() if isinstance(value, str) else value)
            if math.isfinite(number):
                return number
        raise ValueError
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    raise ValueError


def _build(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, naming any bad key with its full path."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            known = ", ".join(prefix + n for n in names)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"known settings: {known}"
            raise SettingsError(f"unknown setting '{path}'; {hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and tp is not Delay:
            if not isinstance(value, Mapping):
                raise SettingsError(f"'{path}' is a table: write [{path}] in TOML or --set {path}.NAME=VALUE")
            kwargs[key] = _build(typing.cast(type, tp), value, f"{path}.")
            continue
        try:
            kwargs[key] = _coerce(value, tp)
        except ValueError as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise SettingsError(f"setting '{path}' must be {_describe(tp)}, got {value!r}{detail}") from None
    try:
        return cls(**kwargs)
    except SettingsError:
        raise
    except ValueError as exc:
        message = str(exc)
        raise SettingsError(message if prefix == "" or message.startswith(prefix) else f"{prefix}{message}") from None


def _apply_override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SettingsError(f"--set expects key=value, got {assignment!r} (e.g. --set idle_timeout_s=5)")
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SettingsError(f"--set {key}: '{part}' is not a table")
        node = child
    node[leaf] = value


def load_settings(
    config: str | None = None, overrides: Iterable[str] = (), seed: int | None = None
) -> GatewaySettings:
    """Build settings from an optional TOML file, ``--set`` pairs and ``--seed``."""
    raw: dict[str, Any] = {}
    if config is not None:
        try:
            with open(config, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config} is not valid TOML: {exc}") from None
    for assignment in overrides:
        _apply_override(raw, assignment)
    if seed is not None:
        raw["seed"] = seed
    settings: GatewaySettings = _build(GatewaySettings, raw, "")
    return settings
