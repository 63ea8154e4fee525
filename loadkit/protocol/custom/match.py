"""Matchers of the ``custom`` profile: which server frame is which event.

An ordered list; the first matcher whose ``when`` fields all match names the
frame's kind, and its paths say where the ref, code, retry-after and detail
are. Paths are compiled once (``"body.errors.0.code"`` → a tuple) so
classifying a frame is dict look-ups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loadkit.protocol.base import MISSING, EventKind, ServerEvent
from loadkit.protocol.custom.schema import MATCH_KEYS, unknown
from loadkit.protocol.custom.template import Problems

__all__ = ["KINDS", "Matcher", "Path", "get_path", "parse_matcher", "parse_path"]

_E = EventKind
Path = tuple[str | int, ...]

#: Matcher kinds and the event each one names.
KINDS: dict[str, EventKind] = {
    "auth_ok": _E.AUTH_OK,
    "auth_refused": _E.AUTH_REFUSED,
    "pong": _E.PONG,
    "ack": _E.ACK,
    "agent_message": _E.AGENT_MESSAGE,
    "error": _E.ERROR,
    "rate_limited": _E.RATE_LIMITED,
    "session_expired": _E.SESSION_EXPIRED,
    "session_ended": _E.SESSION_ENDED,
    "ignored": _E.IGNORED,
}


def parse_path(text: Any, key: str, problems: Problems) -> Path | None:
    """``"body.errors.0.code"`` → ("body", "errors", 0, "code")."""
    if not isinstance(text, str) or not text.strip() or any(not p for p in text.split(".")):
        problems.append((key, text, 'a dotted path into the JSON frame, e.g. "id" or "body.retryAfter"'))
        return None
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def get_path(obj: Any, path: Path) -> Any:
    """The value at ``path``, or MISSING."""
    for part in path:
        if type(obj) is dict:
            obj = obj.get(part, MISSING) if isinstance(part, str) else obj.get(str(part), MISSING)
        elif type(obj) is list and isinstance(part, int):
            obj = obj[part] if part < len(obj) else MISSING
        else:
            return MISSING
        if obj is MISSING:
            return MISSING
    return obj


def _same(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class Matcher:
    kind: EventKind
    tests: tuple[tuple[Path, str, Any], ...]  # (path, "eq" | "in" | "exists", value)
    ref: Path | None = None
    code: Path | None = None
    retry_after: Path | None = None
    detail: Path | None = None

    def matches(self, obj: dict[str, Any]) -> bool:
        for path, op, expected in self.tests:
            value = get_path(obj, path)
            if op == "exists":
                if (value is not MISSING) is not expected:
                    return False
            elif value is MISSING:
                return False
            elif op == "eq":
                if not _same(value, expected):
                    return False
            elif not any(_same(value, e) for e in expected):
                return False
        return True

    def event(self, obj: dict[str, Any]) -> ServerEvent:
        ref = _opt(obj, self.ref)
        code = _opt(obj, self.code)
        retry = _opt(obj, self.retry_after)
        detail = _opt(obj, self.detail)
        number = _as_int(code)
        if self.kind is _E.RATE_LIMITED and number is None:
            number = 4029
        return ServerEvent(
            self.kind,
            None if ref is None else str(ref),
            code=number,
            retry_after=float(retry) if type(retry) in (int, float) and retry > 0 else None,
            detail="" if detail is None else str(detail),
            fields=obj if self.kind is _E.AUTH_OK else {},
        )


def _opt(obj: dict[str, Any], path: Path | None) -> Any:
    if path is None:
        return None
    value = get_path(obj, path)
    return None if value is MISSING else value


def _as_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_matcher(i: int, raw: Any, problems: Problems) -> Matcher | None:
    key = f"match[{i}]"
    if not isinstance(raw, dict):
        problems.append((key, raw, 'a table like {kind = "pong", when = {type = "pong"}, ref = "id"}'))
        return None
    unknown(raw, MATCH_KEYS, key, problems)
    kind = raw.get("kind", MISSING)
    if not isinstance(kind, str):
        kind = kind if kind is MISSING else repr(kind)
    if kind not in KINDS:
        problems.append((f"{key}.kind", kind, "one of " + ", ".join(KINDS)))
    when = raw.get("when", MISSING)
    tests: list[tuple[Path, str, Any]] = []
    if not isinstance(when, dict) or not when:
        problems.append((f"{key}.when", when, 'a non-empty table of field = value, e.g. {type = "pong"}'))
    else:
        for field, expected in when.items():
            path = parse_path(field, f"{key}.when.{field}", problems)
            if path is None:
                continue
            if isinstance(expected, list):
                tests.append((path, "in", tuple(expected)))
            elif isinstance(expected, dict):
                if set(expected) != {"exists"} or not isinstance(expected["exists"], bool):
                    problems.append((f"{key}.when.{field}", expected,
                                     "a value, a list of values (any of), or {exists = true|false}"))
                    continue
                tests.append((path, "exists", expected["exists"]))
            else:
                tests.append((path, "eq", expected))
    paths = {name: parse_path(raw[name], f"{key}.{name}", problems) if name in raw else None
             for name in ("ref", "code", "retry_after", "detail")}
    if kind in KINDS and KINDS[kind] in (_E.PONG, _E.ACK) and paths["ref"] is None and "ref" not in raw:
        problems.append((f"{key}.ref", MISSING, f"for kind = \"{kind}\", the path of the id its answer "
                         "carries back, e.g. ref = \"id\""))
    if kind not in KINDS or not tests:
        return None
    return Matcher(KINDS[kind], tuple(tests), **paths)
