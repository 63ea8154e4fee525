"""The shape of a ``[tool.loadkit.profile]`` table: its keys, and the hook it may name.

Pure checks that report into a ``Problems`` list, so every bad part of a
description is reported at once, each with its key and a "did you mean".
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from loadkit.protocol.custom.template import Problems

__all__ = ["FRAME_KEYS", "HOOKABLE", "MATCH_KEYS", "NEEDS", "TOKEN_KEYS", "TOP_KEYS", "resolve_hook", "unknown"]

#: Profile methods a hook may replace.
HOOKABLE = ("token_request", "token_grant", "websocket_url", "handshake_headers", "auth_frame",
            "ping_frame", "message_frame", "goodbye_frames", "classify", "check_keepalive")

#: What each hookable method needs from the file when the hook does not provide it.
NEEDS = {
    "auth_frame": "frames.auth",
    "ping_frame": "frames.ping",
    "message_frame": "frames.message",
    "classify": "match",
    "websocket_url": "websocket_path",
}

TOP_KEYS = ("websocket_path", "headers", "vars", "token", "frames", "match", "hook", "min_keepalive_s")
TOKEN_KEYS = ("method", "path", "body", "headers", "guest_id", "token", "expires_at")
FRAME_KEYS = ("auth", "ping", "ping_ref", "message", "message_ref", "goodbye", "auth_styles")
MATCH_KEYS = ("kind", "when", "ref", "code", "retry_after", "detail")


def unknown(table: Mapping[str, Any], known: tuple[str, ...], prefix: str, problems: Problems) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "known keys: " + ", ".join(known)
            problems.append((f"{prefix}.{key}" if prefix else key, table[key], f"unknown key; {hint}"))


def resolve_hook(spec: Any, problems: Problems) -> Callable[[Any], Any] | None:
    """``"package.module:Name"`` (``Name`` may be dotted) → the callable it names."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        problems.append(("hook", spec, '"package.module:Name", a class or function called with the '
                         "template profile"))
        return None
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        problems.append(("hook", spec, f"an importable module: cannot import {module_name!r} ({exc})"))
        return None
    for part in attr.split("."):
        if not hasattr(obj, part):
            problems.append(("hook", spec, f"a name defined in {module_name}: it has no {attr!r}"))
            return None
        obj = getattr(obj, part)
    if not callable(obj):
        problems.append(("hook", spec, "a class or function (called with the template profile)"))
        return None
    return obj  # type: ignore[no-any-return]
