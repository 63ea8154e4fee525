"""What a finished run writes: the JSON, HTML and JUnit reports, each whole (a temp file, then a rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def write_outputs(report: dict[str, Any], rows: list[dict[str, Any]], opts: Any,
                  redact: Any = lambda text: text) -> None:
    """The JSON and HTML reports, each written whole (a temp file, then a rename)."""
    if opts.loadkit_report:
        text = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
        _write(Path(opts.loadkit_report), redact(text))
    if opts.loadkit_html:
        from loadkit.report import html

        _write(Path(opts.loadkit_html), redact(html.render(report, rows)))
    if getattr(opts, "loadkit_junit", ""):
        from loadkit.report import junit

        _write(Path(opts.loadkit_junit), redact(junit.render_junit(report)))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
