"""Survival marks (``90s``, ``5m``, ``1h``): one spelling for every reader.

Why a module of its own: the threshold grammar parses a mark the user typed,
the report reader matches it against the marks a report holds, and the HTML
page orders its survival table by them. All three must agree that ``1h`` and
``60m`` are the same mark, so the conversion lives here once. Pure.
"""

from __future__ import annotations

import re

__all__ = ["format_mark", "mark_seconds"]

_MARK_RE = re.compile(r"(\d+)(s|m|h)\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def mark_seconds(mark: str) -> int | None:
    """``"90s"`` -> 90, ``"5m"`` -> 300, ``"1h"`` -> 3600; ``None`` if not a mark."""
    match = _MARK_RE.match(str(mark).strip().lower())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_mark(seconds: int) -> str:
    """The canonical spelling of a survival mark, as the report writes them: 90s, 5m, 60m."""
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
