"""The self-contained HTML report (``--loadkit-html PATH``): :func:`render` is the whole interface.

The page is built in four modules, each with one job: page.py (the document's
skeleton and the order of its sections), tables.py (the sections), charts.py
(SVG line charts) and markup.py (escaping, formatting, tables). Pure: no I/O.
"""

from __future__ import annotations

from loadkit.report.html.page import render

__all__ = ["render"]
