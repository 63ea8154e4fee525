"""``Outputs``: what a run writes: the series file, the JSON/HTML/JUnit reports, the summary.

Why a job of its own: every file loadkit writes and every line it prints
at the end is here, so the figures (``loadkit.locust.aggregation``) and the
verdict (``loadkit.locust.verdict``) stay free of I/O. The plugin's
listeners call it: ``start_test`` at ``test_start``, ``append_row`` for each
series window, ``finish`` at ``quitting`` (or at a web UI test's
``test_stop``), ``print_summary`` at ``quit``, after Locust's own tables.

Each report is written whole (a temp file, then a rename); series rows are
appended and flushed one by one, so a killed soak keeps its windows.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import orjson

from loadkit.locust import testruns
from loadkit.report.exitcodes import verdict_exit_code
from loadkit.report.summary import render_summary

__all__ = ["Outputs", "write_outputs"]

logger = logging.getLogger("loadkit")

#: How long the end waits for the embedded gateway to record its last closes.
GATEWAY_SETTLE_S = 3.0


class Outputs:
    """The files and the summary of one process's tests (numbered from the second web UI test)."""

    def __init__(self, opts: Any, redact: Callable[[str], str]) -> None:
        self.opts = opts
        self.redact = redact
        self.paths = opts  # the report paths of this test (numbered from the second)
        #: the summary, printed once Locust has printed its own final tables
        self.summary_text: str | None = None
        #: the gateway's stats when the test (or a RESET) began: its record is the delta from here
        self.gateway_baseline: dict[str, Any] | None = None

    def start_test(self, opts: Any, test_no: int, gateway: Any) -> None:
        """A new test: its report paths, the gateway's baseline, an empty series file."""
        self.opts = opts
        self.paths = testruns.outputs_of(opts, test_no)
        self.gateway_baseline = gateway.stats() if gateway is not None else None
        path = self.paths.loadkit_series
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"")

    def append_row(self, row: dict[str, Any] | None) -> None:
        path = self.paths.loadkit_series
        if row is not None and path:
            with open(path, "ab") as fh:  # append and flush: a killed soak keeps its windows
                fh.write(orjson.dumps(row) + b"\n")
                fh.flush()

    def gateway_record(self, gateway: Any) -> dict[str, Any] | None:
        """The embedded gateway's record of this test (the delta since its start), or None."""
        if gateway is None:
            return None
        try:
            stats: dict[str, Any] = gateway.stats()
            deadline = time.monotonic() + GATEWAY_SETTLE_S
            while stats["sessions"]["open"] and time.monotonic() < deadline:
                gevent.sleep(0.05)  # the gateway records a close when its handler ends
                stats = gateway.stats()
            return testruns.gateway_delta(self.gateway_baseline, stats)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:  # the summary still matters more
            logger.warning("loadkit: could not read the gateway's stats: %s", exc)
            return None

    def write(self, report: dict[str, Any], rows: list[dict[str, Any]], host: str,
              defer_summary: bool = False) -> int:
        """Every report file, the summary (now, or at ``print_summary``), one stderr line if bad; the exit code."""
        write_outputs(report, rows, self.paths, self.redact)
        self.summary_text = self.redact(render_summary(report))
        if not defer_summary:
            self.print_summary()
        reason = self.redact(report["verdict_reason"])
        if report["verdict"] == "unreachable":
            print(f"loadkit: target {self.redact(host)} unreachable: {reason}", file=sys.stderr, flush=True)
        elif report["verdict"] == "error":
            print(f"loadkit: ERROR: {reason}", file=sys.stderr, flush=True)
        return int(verdict_exit_code(report["verdict"]))

    def print_summary(self) -> None:
        """The loadkit summary: the last thing on the terminal, after Locust's final tables."""
        if self.summary_text is not None:
            print(self.summary_text, flush=True)
            self.summary_text = None


def write_outputs(report: dict[str, Any], rows: list[dict[str, Any]], opts: Any,
                  redact: Callable[[str], str] = lambda text: text) -> None:
    """The JSON, HTML and JUnit reports, each written whole (a temp file, then a rename)."""
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
