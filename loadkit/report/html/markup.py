"""Markup for the HTML report: escaping, numbers for display, and tables.

Why one place: every string in a report is whatever a server or a user wrote
(close reasons, settings, outcome names), so every cell goes through
:func:`esc`; and the same figure must read the same in every section (a
thousands separator, three significant digits for small rates, a dash for
null). The readers here also tolerate partial data: :func:`num`,
:func:`as_dict` and :func:`as_list` turn anything unexpected into "nothing".
Pure.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["as_dict", "as_list", "esc", "fmt", "fmt_limit", "not_measured", "num", "pct", "table"]


def esc(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def as_dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def fmt(value: Any) -> str:
    """A value for display, already escaped."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return esc(value)
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return esc(f"{value:.3g}")
    if isinstance(value, (dict, list)):
        return esc(json.dumps(value, sort_keys=True, default=str))
    return esc(value)


def fmt_limit(value: Any) -> str:
    """A threshold's limit as the user probably wrote it: 300, 0.01, 1e-05."""
    number = num(value)
    return esc(f"{number:g}") if number is not None else fmt(value)


def pct(value: Any) -> str:
    number = num(value)
    if number is None:
        return "&ndash;"
    return f"{number * 100:.3g}&nbsp;%"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (),
           row_classes: Sequence[str] | None = None, cell_classes: Mapping[int, str] | None = None) -> str:
    """An HTML table; ``rows`` hold already escaped cells, ``headers`` are plain text."""
    numeric = set(numeric)
    cell_classes = dict(cell_classes or {})
    num_attr = ' class="num"'
    head = "".join(f"<th{num_attr if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for n, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            classes = [c for c in (("num" if i in numeric else ""), cell_classes.get(i, "")) if c]
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{cell}</td>")
        cls = f' class="{esc(row_classes[n])}"' if row_classes and row_classes[n] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    if not body:
        return '<p class="note">none</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def not_measured(what: str) -> str:
    return f'<p class="note">{esc(what)}: not measured.</p>'
