"""The ``custom`` profile itself: the Profile interface over compiled templates and matchers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from loadkit.errors import LocalProtocolError
from loadkit.protocol.base import (
    AUTH_STYLES,
    MISSING,
    EventKind,
    ProfileOptionError,
    ServerEvent,
    TokenGrant,
    TokenRequest,
    UNKNOWN_TYPE,
    json_object,
)
from loadkit.protocol.custom.match import KINDS, Matcher, Path, get_path, parse_matcher, parse_path
from loadkit.protocol.custom.schema import FRAME_KEYS, HOOKABLE, NEEDS, TOKEN_KEYS, resolve_hook, unknown
from loadkit.protocol.custom.template import PLACEHOLDERS, Problems, Template, template
from loadkit.protocol.guest import http_url_from_base, ws_url_from_base

__all__ = ["CustomProfile", "HookedProfile", "TokenSpec"]

_E = EventKind


@dataclass(frozen=True, slots=True)
class TokenSpec:
    method: str
    path: Template
    body: Template | None
    body_is_text: bool
    headers: tuple[tuple[str, str], ...]
    guest_id: Path
    token: Path
    expires_at: Path | None


class CustomProfile:
    """A profile whose frames and matchers come from a scenario file."""

    name = "custom"

    def __init__(self) -> None:  # use from_options
        self.min_keepalive_s = 0.0
        self.auth_styles: tuple[str, ...] = ("normal", "none", "bad_token")
        self.variables: dict[str, Any] = {}
        self.ws_path: Template | None = None
        self.headers: list[tuple[str, str]] = []
        self.token_spec: TokenSpec | None = None  # None: generate
        self.frames: dict[str, Template] = {}
        self.styles: dict[str, Template] = {}
        self.refs: dict[str, Path] = {}
        self.goodbye: list[Template] = []
        self.matchers: list[Matcher] = []
        self.hook = ""

    @property
    def reply_refs(self) -> bool:
        """True when an agent_message matcher says where the answered message's ref is."""
        return any(m.kind is _E.AGENT_MESSAGE and m.ref is not None for m in self.matchers)

    def __repr__(self) -> str:  # vars may hold secrets: names only
        return (f"CustomProfile(vars={sorted(self.variables)}, matchers={len(self.matchers)}, "
                f"hook={self.hook!r})")

    # -- building ----------------------------------------------------------------------------------

    @classmethod
    def from_options(cls, *, websocket_path: Any = MISSING, headers: Any = MISSING, vars: Any = MISSING,
                     token: Any = "generate", frames: Any = MISSING, match: Any = MISSING,
                     hook: Any = "", min_keepalive_s: Any = 0.0) -> Any:
        """Compile the ``[tool.loadkit.profile]`` table; the profile (hooked, if a hook is named)."""
        problems: Problems = []
        p = cls()
        factory = None
        if hook:
            factory = resolve_hook(hook, problems)
            p.hook = str(hook)
        if isinstance(min_keepalive_s, bool) or not isinstance(min_keepalive_s, (int, float)) or min_keepalive_s < 0:
            problems.append(("min_keepalive_s", min_keepalive_s, "a number of seconds >= 0"))
        else:
            p.min_keepalive_s = float(min_keepalive_s)
        p.variables = p._parse_vars(vars, problems)
        p._parse_ws(websocket_path, headers, problems)
        p._parse_token(token, problems)
        p._parse_frames(frames, problems)
        if match is not MISSING:
            if not isinstance(match, list):
                problems.append(("match", match, "an array of tables: [[tool.loadkit.profile.match]]"))
            else:
                p.matchers = [m for i, raw in enumerate(match) if (m := parse_matcher(i, raw, problems))]
        provided: set[str] = set()
        profile: Any = p
        if factory is not None and not problems:
            try:
                obj = factory(p)
            except Exception as exc:  # noqa: BLE001 - the user's code: say which and why, one line
                problems.append(("hook", hook, f"calling it with the template profile failed: "
                                 f"{exc.__class__.__name__}: {exc}"))
            else:
                provided = {m for m in HOOKABLE if callable(getattr(obj, m, None))}
                profile = HookedProfile(p, obj, provided)
        p._check_complete(provided, problems)
        if problems:
            raise ProfileOptionError(cls.name, problems)
        return profile

    def _parse_vars(self, raw: Any, problems: Problems) -> dict[str, Any]:
        if raw is MISSING:
            return {}
        if not isinstance(raw, dict):
            problems.append(("vars", raw, 'a table of name = value, e.g. vars = {version = "1.0"}'))
            return {}
        out = {}
        for name, value in raw.items():
            if not name.isidentifier():
                problems.append((f"vars.{name}", value, "a name made of letters, digits and _"))
            elif name in PLACEHOLDERS:
                problems.append((f"vars.{name}", value, f"a name other than the built-in placeholders "
                                 f"({', '.join(PLACEHOLDERS)})"))
            elif isinstance(value, (str, int, float, bool)):
                out[name] = value
            else:
                problems.append((f"vars.{name}", value, "a string, number or boolean"))
        return out

    def _parse_ws(self, path: Any, headers: Any, problems: Problems) -> None:
        if path is not MISSING:
            if not isinstance(path, str) or not path.startswith("/"):
                problems.append(("websocket_path", path, 'a path starting with "/", e.g. "/api/v2/guest/websocket"'))
            else:
                self.ws_path = template(path, "websocket_path", "websocket_path", self.variables, problems)
        if headers is not MISSING:
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                problems.append(("headers", headers, 'a table of header = "value" sent with the upgrade'))
            else:
                ctx = dict(self.variables)
                for name, value in headers.items():
                    t = template(value, f"headers.{name}", "headers", self.variables, problems)
                    try:
                        self.headers.append((str(name), str(t.render(ctx))))
                    except KeyError:
                        pass

    def _parse_token(self, raw: Any, problems: Problems) -> None:
        if raw == "generate":
            return
        if not isinstance(raw, dict):
            problems.append(("token", raw, '"generate", or a table with method, path, guest_id and token'))
            return
        unknown(raw, TOKEN_KEYS, "token", problems)
        method = raw.get("method", "POST")
        if method not in ("GET", "POST", "PUT"):
            problems.append(("token.method", method, '"POST", "GET" or "PUT"'))
        path = raw.get("path", MISSING)
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(("token.path", path, 'the token endpoint\'s path, e.g. "/api/v2/guests"'))
            path = "/"
        body = raw.get("body", MISSING)
        body_t = None
        if body is not MISSING:
            body_t = template(body, "token.body", "token", self.variables, problems)
        headers = raw.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            problems.append(("token.headers", headers, 'a table of header = "value"'))
            headers = {}
        if body_t is not None and not isinstance(body, str) and not any(
                h.lower() == "content-type" for h in headers):
            headers = {**headers, "Content-Type": "application/json"}
        paths = {}
        for name in ("guest_id", "token"):
            if name not in raw:
                problems.append((f"token.{name}", MISSING, f'the JSON path of the {name} in the '
                                 f'answer, e.g. {name} = "{"guestId" if name == "guest_id" else "token"}"'))
            paths[name] = parse_path(raw.get(name, "x"), f"token.{name}", problems)
        expires = parse_path(raw["expires_at"], "token.expires_at", problems) if "expires_at" in raw else None
        if paths["guest_id"] and paths["token"]:
            self.token_spec = TokenSpec(
                str(method), template(path, "token.path", "token", self.variables, problems), body_t,
                isinstance(body, str), tuple((str(k), str(v)) for k, v in headers.items()),
                paths["guest_id"], paths["token"], expires,
            )

    def _parse_frames(self, raw: Any, problems: Problems) -> None:
        if raw is MISSING:
            return
        if not isinstance(raw, dict):
            problems.append(("frames", raw, "a table with auth, ping, message (and goodbye, auth_styles)"))
            return
        unknown(raw, FRAME_KEYS, "frames", problems)
        for name in ("auth", "ping", "message"):
            if name in raw:
                if not isinstance(raw[name], dict):
                    problems.append((f"frames.{name}", raw[name], "a table: the JSON object to send"))
                    continue
                self.frames[name] = template(raw[name], f"frames.{name}", name, self.variables, problems)
        for name in ("ping", "message"):
            ref_key = f"{name}_ref"
            if name not in self.frames:
                if ref_key in raw:
                    problems.append((f"frames.{ref_key}", raw[ref_key],
                                     f"unknown here: there is no frames.{name} to point into"))
                continue
            default = "id" if "id" in raw[name] else MISSING
            ref = raw.get(ref_key, default)
            if ref is MISSING:
                problems.append((f"frames.{ref_key}", MISSING, f"the field of frames.{name} that "
                                 f"its answer carries back, e.g. {ref_key} = \"id\""))
                continue
            path = parse_path(ref, f"frames.{ref_key}", problems)
            if path is not None:
                sample = self._sample(name)
                if sample is not None and get_path(sample, path) is MISSING:
                    problems.append((f"frames.{ref_key}", ref, f"a path that exists in frames.{name}"))
                self.refs[name] = path
        goodbye = raw.get("goodbye", [])
        if not isinstance(goodbye, list) or not all(isinstance(g, dict) for g in goodbye):
            problems.append(("frames.goodbye", goodbye, "an array of tables: the frames sent before closing"))
        else:
            self.goodbye = [template(g, f"frames.goodbye[{i}]", "goodbye", self.variables, problems)
                            for i, g in enumerate(goodbye)]
        styles = raw.get("auth_styles", {})
        if not isinstance(styles, dict):
            problems.append(("frames.auth_styles", styles, "a table of style = frame"))
            styles = {}
        for style, frame in styles.items():
            if style not in AUTH_STYLES or style in ("normal", "none", "bad_token"):
                problems.append((f"frames.auth_styles.{style}", frame, "a style among "
                                 + ", ".join(s for s in AUTH_STYLES if s not in ("normal", "none", "bad_token"))))
            elif not isinstance(frame, dict):
                problems.append((f"frames.auth_styles.{style}", frame, "a table: the JSON object to send"))
            else:
                self.styles[style] = template(frame, f"frames.auth_styles.{style}", "auth", self.variables, problems)
        self.auth_styles = ("normal", "none", "bad_token", *self.styles)

    def _sample(self, name: str) -> Any:
        ctx: dict[str, Any] = {"guestId": "g", "token": "t", "seq": 1, "text": "x", **self.variables}
        try:
            return self.frames[name].build(ctx)
        except (KeyError, TypeError):
            return None

    def _check_complete(self, provided: set[str], problems: Problems) -> None:
        for method, part in NEEDS.items():
            if method in provided:
                continue
            if part == "match":
                if not self.matchers and not any(k == "match" or k.startswith("match[") for k, _v, _e in problems):
                    problems.append(("match", MISSING, "[[match]] tables for the server's frames, "
                                     "at least one with kind = \"auth_ok\""))
                continue
            _section, _, name = part.partition(".")
            have = self.ws_path is not None if part == "websocket_path" else name in self.frames
            if not have and not any(k == part for k, _v, _e in problems):
                problems.append((part, MISSING, f"a template (or a hook that has {method})"))
        if "classify" not in provided and self.matchers:
            kinds = {m.kind for m in self.matchers}
            for needed, why in ((_E.AUTH_OK, "authentication can never succeed"),
                                (_E.PONG, "every ping would count as a missed pong"),
                                (_E.ACK, "no message would ever be acknowledged")):
                if needed not in kinds:
                    name = next(k for k, v in KINDS.items() if v is needed)
                    problems.append(("match", MISSING, f"a matcher with kind = \"{name}\": without it {why}"))

    # -- the Profile interface ---------------------------------------------------------------------

    def _ctx(self, grant: TokenGrant) -> dict[str, Any]:
        return {**self.variables, "guestId": grant.guest_id, "token": grant.token}

    def token_request(self, base_url: str, guest_no: int) -> TokenRequest | None:
        spec = self.token_spec
        if spec is None:
            return None
        ctx = {**self.variables, "guestNo": guest_no}
        body = b""
        if spec.body is not None:
            value = spec.body.build(ctx)
            body = value.encode() if spec.body_is_text else orjson.dumps(value)
        return TokenRequest(spec.method, http_url_from_base(base_url, spec.path.build(ctx)), body, spec.headers)

    def token_grant(self, status: int | None, body: bytes, guest_no: int) -> TokenGrant:
        spec = self.token_spec
        if spec is None:
            return TokenGrant(str(uuid.uuid4()), str(uuid.uuid4()))
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ValueError("malformed token response: not JSON") from None
        guest_id, token = get_path(data, spec.guest_id), get_path(data, spec.token)
        if guest_id is MISSING or token is MISSING or guest_id is None or token is None:
            missing = ".".join(map(str, spec.guest_id if guest_id in (MISSING, None) else spec.token))
            raise ValueError(f"malformed token response: nothing at {missing!r}")
        expires: Any = get_path(data, spec.expires_at) if spec.expires_at else None
        return TokenGrant(str(guest_id), str(token),
                          float(expires) if type(expires) in (int, float) else None)

    def websocket_url(self, base_url: str, grant: TokenGrant) -> str:
        if self.ws_path is None:
            raise LocalProtocolError("custom profile: no websocket_path and no hook for websocket_url")
        ctx = {k: quote(str(v), safe="") for k, v in self._ctx(grant).items()}
        path, _, query = str(self.ws_path.build(ctx)).partition("?")
        return ws_url_from_base(base_url, path, query)

    def handshake_headers(self, base_url: str) -> list[tuple[str, str]]:
        return list(self.headers)

    def _frame(self, name: str, ctx: dict[str, Any]) -> Any:
        t = self.frames.get(name)
        if t is None:
            raise LocalProtocolError(f"custom profile: no frames.{name} and no hook for it")
        return t.build(ctx)

    def auth_frame(self, grant: TokenGrant, style: str = "normal") -> bytes | None:
        if style == "none":
            return None
        ctx = self._ctx(grant)
        if style == "bad_token":
            ctx["token"] = grant.token[:-4] + "XXXX" if len(grant.token) > 4 else "XXXX"
        if style in self.styles:
            return orjson.dumps(self.styles[style].build(ctx))
        if style not in ("normal", "bad_token"):
            raise LocalProtocolError(f"custom profile: auth style {style!r} has no frames.auth_styles entry")
        return orjson.dumps(self._frame("auth", ctx))

    def ping_frame(self, seq: int, grant: TokenGrant) -> tuple[bytes, Any]:
        ctx = self._ctx(grant)
        ctx["seq"] = seq
        frame = self._frame("ping", ctx)
        return orjson.dumps(frame), str(get_path(frame, self.refs["ping"]))

    def message_frame(self, seq: int, text: str, grant: TokenGrant) -> tuple[bytes, Any]:
        ctx = self._ctx(grant)
        ctx["seq"] = seq
        ctx["text"] = text
        frame = self._frame("message", ctx)
        return orjson.dumps(frame), str(get_path(frame, self.refs["message"]))

    def goodbye_frames(self, grant: TokenGrant) -> list[bytes]:
        ctx = self._ctx(grant)
        return [orjson.dumps(t.build(ctx)) for t in self.goodbye]

    def classify(self, data: bytes | str) -> ServerEvent:
        obj = json_object(data)
        if isinstance(obj, ServerEvent):
            return obj  # MALFORMED
        for m in self.matchers:
            if m.matches(obj):
                return m.event(obj)
        # A JSON object none of the described frames matches: a bad frame of its own kind,
        # classified here like every profile's (the driver never has to guess the kind).
        return ServerEvent(_E.UNKNOWN, detail="no matcher", bad=UNKNOWN_TYPE)


class HookedProfile:
    """A custom profile with some methods replaced by a hook object's."""

    name = "custom"

    def __init__(self, base: CustomProfile, hook: Any, provided: set[str]) -> None:
        self.base = base
        self.hook_object = hook
        self.min_keepalive_s = float(getattr(hook, "min_keepalive_s", base.min_keepalive_s))
        self.auth_styles = tuple(getattr(hook, "auth_styles", base.auth_styles))
        self.reply_refs = bool(getattr(hook, "reply_refs", base.reply_refs or "classify" in provided))
        for method in HOOKABLE:
            if method in provided:
                setattr(self, method, getattr(hook, method))
            elif hasattr(base, method):
                setattr(self, method, getattr(base, method))

    def __repr__(self) -> str:
        return f"HookedProfile(hook={self.base.hook!r}, base={self.base!r})"
