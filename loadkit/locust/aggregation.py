"""``Figures``: what one Locust process adds up during a run. No file I/O, no Locust.

Why a job of its own: the run's totals, the current time-series window,
the workers' gauges, the drift between the first and the last windows and
the CPU samples are all "what happened so far"; the verdict
(``loadkit.locust.verdict``) judges them and the outputs
(``loadkit.locust.outputs``) write them, but neither changes them.

- Local users record into ``recorder``; ``collect_local`` moves that into
  ``window`` (the current series window). A master has no users: the
  ``Ledger`` (``loadkit.locust.ledger``) adds each worker's delta with
  ``absorb`` and keeps ``worker_open`` and the names of the workers that
  were lost or left.
- ``close_window`` turns the window into one series row, adds it to
  ``closed`` (every closed window) and starts the next. The run's ``total``
  is ``closed`` and the open window, added up when read. Why not add every
  delta to the total as it comes: a master of 1,000 workers merges 300
  reports a second, and each merge costs; merging each into one place and
  the window into the total once per window halves that (the total is read
  a few times a minute at most: the web UI, a Prometheus scrape, the report).
- ``sample_cpu``: the harness's CPU (``usage_monitor``), for saturation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from loadkit.metrics.drift import Drift
from loadkit.metrics.recorder import HARNESS_SERIES, Recorder, WireReport
from loadkit.report.harness import harness_section
from loadkit.session import LiveSessions

__all__ = ["Figures"]


class Figures:
    """Recorders and windows of one process: the run's totals, the series, drift and CPU samples."""

    def __init__(self, marks: Any, recorder: Recorder, live: LiveSessions, is_master: bool) -> None:
        self.marks = marks
        self.recorder = recorder  # this process's users record here
        self.live = live
        self.is_master = is_master
        self.closed = Recorder(marks)    # merged: every closed time-series window of the run
        self.window = Recorder(marks)    # merged: the current time-series window
        #: a master's workers: their last open-sessions gauge; those lost, and why any left early
        self.worker_open: dict[str, int] = {}
        self.lost_workers: set[str] = set()
        self.left_workers: dict[str, str] = {}
        self.series_rows: list[dict[str, Any]] = []
        #: each phase's first and last windows, for the drift gates (loadkit.metrics.drift)
        self.drift_spans = Drift()
        #: when the spawn had completed and settled (monotonic): windows that begin then or later are
        #: steady, a drift first side (loadkit.metrics.drift); None while the spawn is still going
        self.steady_since: float | None = None
        self.cpu_samples: list[float] = []
        self.started_wall: float | None = None
        self.started_mono: float | None = None
        self.window_started: float | None = None
        #: sessions taken back from write-offs of closed windows (the master's ledger sets this)
        self.take_revived: Callable[[], int] = lambda: 0

    # -- adding up ----------------------------------------------------------------

    def collect_local(self) -> None:
        """Move what local users recorded into the run and window totals."""
        if self.is_master:
            return
        self.absorb(self.recorder.detach())

    def absorb(self, delta: Recorder) -> None:
        self.window.merge(delta)

    def absorb_wire(self, report: WireReport) -> None:
        """A worker's delta as it came (read and checked), merged straight into the window."""
        self.window.merge_wire(report)

    @property
    def total(self) -> Recorder:
        """The whole run so far (local or master): the closed windows and the open one, added up now.

        A new Recorder at each read: changing it changes nothing (the ledger
        takes back write-offs from ``window`` and ``closed``).
        """
        total = Recorder(self.marks)
        total.merge(self.closed)
        total.merge(self.window)
        return total

    def open_sessions(self) -> int:
        if self.is_master:
            return sum(self.worker_open.values())
        return self.live.open

    def sample_cpu(self, cpu_usage: float, worker_cpus: list[float] | None) -> None:
        """One ``usage_monitor`` sample: a master keeps the busiest of itself and its workers."""
        self.cpu_samples.append(max([*worker_cpus, cpu_usage]) if worker_cpus is not None else cpu_usage)

    # -- a new run, or a RESET ----------------------------------------------------

    def restart(self, marks: Any, carried: int = 0, keep_steady: bool = False) -> None:
        """Counting starts again now; ``carried`` sessions open now count as started.

        A new test carries none (and drops what users recorded before it);
        a RESET carries the open ones, so ``started == ended + open`` holds.
        A new test's spawn is still to come; a RESET (``keep_steady``) leaves
        the run as steady as it was: once the spawn has completed, its
        windows from now on are steady.
        """
        self.marks = marks
        self.closed = Recorder(marks)
        self.window = Recorder(marks)
        self.window.started = carried
        self.series_rows = []
        self.drift_spans = Drift()
        self.cpu_samples = []
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.window_started = self.started_mono
        if not keep_steady:
            self.steady_since = None

    def spawn_completed(self, settle_s: float) -> None:
        """Locust's spawn completed: windows that begin ``settle_s`` from now on are steady (the first time only)."""
        if self.steady_since is None:
            self.steady_since = time.monotonic() + settle_s

    # -- the time series ----------------------------------------------------------

    def close_window(self) -> dict[str, Any] | None:
        """The current window as one series row (kept in ``series_rows``), or None if nothing to close."""
        self.collect_local()
        now = time.monotonic()
        if self.window_started is None or self.started_mono is None:
            return None
        w = self.window
        span = now - self.window_started
        if span <= 0.05 and w.is_empty():
            return None
        latency = {}
        measured = {}
        for phase, hist in w.latency.items():
            if hist and phase not in HARNESS_SERIES:
                latency[phase] = hist.summary_ms((50, 95, 99))
                measured[phase] = hist
        steady = self.steady_since is not None and self.window_started >= self.steady_since
        self.drift_spans.add_window(measured, steady)  # the window's recorder is not written again
        outcomes = w.outcomes()
        codes: dict[str, int] = {}
        for (_p, code, _r, _i), n in w.close_codes.items():
            codes[str(code)] = codes.get(str(code), 0) + n
        row = {
            "t": round(time.time(), 3),
            "elapsed_s": round(now - self.started_mono, 3),
            "window_s": round(span, 3),
            "open": self.open_sessions(),
            "started": w.started,
            "authenticated": w.authenticated,
            "ended": sum(outcomes.values()),
            "drops": w.drops(),
            "reconnects": w.reconnect_attempts,
            "outcomes": outcomes,
            "close_codes": codes,
            "latency_ms": latency,
            "harness": harness_section(w),
            "cpu_percent": self.cpu_samples[-1] if self.cpu_samples else None,
        }
        revived = self.take_revived()
        if revived:  # counted lost_with_worker in an earlier row, then the worker spoke again
            row["revived"] = revived
        self.series_rows.append(row)
        self.closed.merge(w)
        self.window = Recorder(self.marks)
        self.window_started = now
        return row

    def drift(self, window_s: float) -> dict[str, Any]:
        """The report's ``drift``: each phase's percentiles over the first and the last windows."""
        return {"window_s": window_s, "windows": len(self.series_rows), **self.drift_spans.spans()}
