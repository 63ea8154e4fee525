"""Frame templates of the ``custom`` profile: compiled once, rendered per frame.

A template is a JSON value whose strings may hold ``{placeholder}`` names;
compiling it checks every placeholder against the ones its context allows
(so a typo is a scenario-file error, not a frame with ``{tokne}`` in it)
and leaves a tree of small closures, so a frame costs a few calls.
"""

from __future__ import annotations

import string
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PLACEHOLDERS", "Problems", "Render", "Template", "template"]

#: Problems found in a description: (key, value found, what was expected).
Problems = list[tuple[str, Any, str]]
Render = Callable[[Mapping[str, Any]], Any]

#: Built-in placeholders, and where each may be used.
PLACEHOLDERS: dict[str, str] = {
    "guestId": "the guest's id (from the token call, or generated)",
    "token": "the guest's token",
    "seq": "the frame's sequence number in its session (ping, message)",
    "id": "a fresh lower-case UUID, one per frame",
    "text": "the chat text (message)",
    "ts_ms": "the time, epoch milliseconds",
    "guestNo": "the guest's number (token call)",
}
_CONTEXTS: dict[str, tuple[str, ...]] = {
    "auth": ("guestId", "token", "id", "ts_ms"),
    "ping": ("guestId", "token", "seq", "id", "ts_ms"),
    "message": ("guestId", "token", "seq", "id", "text", "ts_ms"),
    "goodbye": ("guestId", "token", "id", "ts_ms"),
    "token": ("guestNo", "id", "ts_ms"),
    "websocket_path": ("guestId", "token"),
    "headers": (),
}


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled frame template: ``render(context)`` gives the JSON value."""

    render: Render
    uses: frozenset[str]

    def build(self, ctx: dict[str, Any]) -> Any:
        if "id" in self.uses:
            ctx["id"] = str(uuid.uuid4())
        if "ts_ms" in self.uses:
            ctx["ts_ms"] = int(time.time() * 1000)
        return self.render(ctx)


_FORMATTER = string.Formatter()


def _compile(value: Any, key: str, allowed: tuple[str, ...], problems: Problems,
             uses: set[str]) -> Render:
    if isinstance(value, dict):
        parts = [(str(k), _compile(v, f"{key}.{k}", allowed, problems, uses)) for k, v in value.items()]
        return lambda ctx: {k: f(ctx) for k, f in parts}
    if isinstance(value, list):
        items = [_compile(v, f"{key}[{i}]", allowed, problems, uses) for i, v in enumerate(value)]
        return lambda ctx: [f(ctx) for f in items]
    if isinstance(value, str):
        return _compile_text(value, key, allowed, problems, uses)
    if isinstance(value, (bool, int, float)) or value is None:
        return lambda ctx: value
    problems.append((key, value, "a JSON value (string, number, boolean, table or array)"))
    return lambda ctx: None


def _compile_text(text: str, key: str, allowed: tuple[str, ...], problems: Problems,
                  uses: set[str]) -> Render:
    try:
        pieces = list(_FORMATTER.parse(text))
    except ValueError as exc:
        problems.append((key, text, f"a template string: {exc} (write {{{{ and }}}} for literal braces)"))
        return lambda ctx: text
    names = []
    for _literal, name, spec, conversion in pieces:
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            problems.append((key, text, f"placeholders are plain names like {{token}}, got {{{name}}}"))
            return lambda ctx: text
        if name not in allowed:
            where = ", ".join("{" + n + "}" for n in allowed) or "none"
            problems.append((key, text, f"unknown placeholder {{{name}}} here; known here: {where}"))
            return lambda ctx: text
        names.append(name)
    uses.update(names)
    if len(pieces) == 1 and pieces[0][0] == "" and pieces[0][1] is not None:
        name = pieces[0][1]
        return lambda ctx: ctx[name]  # the whole string is one placeholder: keep the value's type
    if not names:
        literal = "".join(p[0] for p in pieces)
        return lambda ctx: literal
    steps = [(lit, name) for lit, name, _s, _c in pieces]

    def render(ctx: Mapping[str, Any]) -> str:
        out = []
        for lit, name in steps:
            out.append(lit)
            if name is not None:
                out.append(str(ctx[name]))
        return "".join(out)

    return render


def template(value: Any, key: str, context: str, variables: Mapping[str, Any], problems: Problems) -> Template:
    uses: set[str] = set()
    render = _compile(value, key, _CONTEXTS[context] + tuple(variables), problems, uses)
    return Template(render, frozenset(uses))
