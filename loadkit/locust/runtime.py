"""``Runtime``: what loadkit keeps in one Locust process, and how its three jobs fit together.

Its own part is the configuration (options, profile, thresholds, transport)
and the per-process pieces users need (recorder, live sessions, the
embedded gateway, the run's seed). The work is done by three jobs, each in
its own module and each free of the others' concerns:

- ``figures`` (``loadkit.locust.aggregation``): recorders and windows, the
  series, drift, CPU samples;
- ``verdict`` (``loadkit.locust.verdict``): thresholds, breach checks,
  saturation, the "stopped early" rules;
- ``outputs`` (``loadkit.locust.outputs``): the series file, the reports,
  the summary.

The plugin's listeners (``loadkit.locust.plugin``) drive them from Locust's
events; users, the distributed ledger, the web UI, Prometheus and the
test-run bookkeeping read what they need here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from loadkit.locust import checks, options
from loadkit.locust.aggregation import Figures
from loadkit.locust.outputs import Outputs
from loadkit.locust.request_stats import RequestBatcher
from loadkit.locust.user import ARRIVAL_SPREAD_S
from loadkit.locust.verdict import Verdict, iso
from loadkit.metrics.recorder import Recorder
from loadkit.protocol.base import check_keepalive
from loadkit.report import thresholds as threshold_rules
from loadkit.report.build import build_report
from loadkit.session import LiveSessions
from loadkit.transport import GeventTransport

logger = logging.getLogger("loadkit")


class Runtime:
    """Everything loadkit keeps in one Locust process."""

    def __init__(self, environment: Any, opts: Any, scenario: Any = None) -> None:
        self.environment = environment
        self.opts = opts
        #: the ``[tool.loadkit]`` table of Locust's ``--config`` file, if any
        self.scenario = scenario
        self.transport: GeventTransport | None = None
        self.configure()
        marks = self.settings.survival_marks
        self.recorder = Recorder(marks)  # this process's users record here
        self.live = LiveSessions()
        self.gateway: Any = None
        self.run_seed: int | None = None
        self.figures = Figures(marks, self.recorder, self.live, self.is_master)
        self.verdict = Verdict(self.options, self.thresholds, opts)
        self.outputs = Outputs(opts, self.redact)
        self.ticker: gevent.Greenlet | None = None
        self.finished = False
        #: web UI: the tests started so far, whether this one's report is claimed, its exit code
        self.test_no = 0
        self.test_done = False
        self.last_code: int | None = None
        #: timings on their way to Locust's statistics (``report`` is the users' sink)
        self.requests = RequestBatcher(environment)
        self.report = self.requests.report

    def configure(self) -> None:
        """(Re)build everything that follows from the options; ConfigError if they are bad.

        Called at ``init`` and again at each ``test_start``: the web UI may
        have changed the options, and a worker only gets the master's values
        in its spawn message.
        """
        opts = self.opts
        self.options = options.settings_from(opts)
        self.settings = s = self.options.settings
        checks.check_users(opts)
        self.profile = checks.make_profile(self.scenario, self.options.protocol)
        self.thresholds = threshold_rules.parse_all(self.options.threshold)
        check_keepalive(self.profile, s.keepalive_s)
        checks.check_guest_mix(self.profile, s.guest_mix)
        if self.transport is not None:
            self.transport.close()
        self.transport = GeventTransport(open_timeout=s.connect_timeout_s, close_timeout=s.close_timeout_s,
                                         ssl_context=checks.tls_context(self.options.tls_ca))
        recorder: Recorder | None = getattr(self, "recorder", None)
        if recorder is not None and recorder.marks != s.survival_marks:
            recorder.detach()  # a new test: what the old one recorded was shipped or reset
            recorder.marks = s.survival_marks
        verdict: Verdict | None = getattr(self, "verdict", None)
        if verdict is not None:
            verdict.configure(self.options, self.thresholds, opts)

    # -- what kind of process ---------------------------------------------------

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment.runner, WorkerRunner)

    @property
    def is_master(self) -> bool:
        return isinstance(self.environment.runner, MasterRunner)

    # -- the figures, as the web UI, Prometheus and the ledger read them ---------

    @property
    def total(self) -> Recorder:
        return self.figures.total

    @property
    def worker_open(self) -> dict[str, int]:
        return self.figures.worker_open

    @property
    def series_rows(self) -> list[dict[str, Any]]:
        return self.figures.series_rows

    def collect_local(self) -> None:
        self.figures.collect_local()

    def open_sessions(self) -> int:
        return self.figures.open_sessions()

    # -- a test: start, windows, end -----------------------------------------------

    def reset(self) -> None:
        """A new test begins (``test_start`` on a local run or the master)."""
        self.recorder.detach()
        self.figures.restart(self.settings.survival_marks)
        self.verdict.restart(self.figures.started_mono or time.monotonic(), first_test=not self.test_no)
        self.finished = False
        self.test_no += 1
        self.test_done, self.last_code = False, None
        self.outputs.start_test(self.opts, self.test_no, self.gateway)

    def spawn_completed(self) -> None:
        """Locust's spawn completed: the steady state (drift's first side) begins once it has settled.

        Settled: the last users' first sessions have arrived (each starts
        within ``ARRIVAL_SPREAD_S`` of its spawn) and, on a master, the
        workers' reports of the spawn's last seconds are in (one report
        interval).
        """
        self.figures.spawn_completed(ARRIVAL_SPREAD_S + (WORKER_REPORT_INTERVAL if self.is_master else 0.0))

    def tick(self) -> None:
        """One series window closed and written; the breach checks run on the figures so far."""
        self.outputs.append_row(self.figures.close_window())
        self.check_breach()

    def tick_forever(self) -> None:
        interval = self.options.series_interval
        while True:
            gevent.sleep(interval)
            try:
                self.tick()
            except Exception:
                logger.exception("loadkit: time-series window failed")

    def check_breach(self) -> None:
        """``--abort-on-breach``: a breach that counts stops the run (Locust's quit, from a greenlet of its own)."""
        started = self.figures.started_mono
        if started is None or not self.verdict.wants_breach_checks():
            return
        if self.verdict.check_breach(self.build(final=False), started) is not None:
            gevent.spawn_later(0, self.environment.runner.quit)

    def redact(self, text: str) -> str:
        """Secrets from the scenario file never reach a summary or a report."""
        return self.scenario.redact(text) if self.scenario is not None else text

    def run_info(self) -> dict[str, Any]:
        """The report's ``run`` section: when, against what, with which settings, and how it ended."""
        ended = time.time()
        fig = self.figures
        started = fig.started_wall or ended
        return {
            "started_at": iso(started),
            "ended_at": iso(ended),
            "duration_s": round(ended - started, 3),
            "host": self.environment.host,
            "profile": self.profile.name,
            "embedded_gateway": self.gateway is not None,
            "users": getattr(self.opts, "num_users", None),
            "workers": {"count": len(fig.worker_open), "lost": sorted(fig.lost_workers),
                        "left": [{"worker": w, "why": why} for w, why in sorted(fig.left_workers.items())]},
            "settings": {**self.settings.as_dict(), "thresholds": list(self.options.threshold)},
            "seed": self.run_seed,
            "planned_s": self.verdict.planned_s(),
            "aborted": self.verdict.aborted_info(fig.started_mono, ended),
        }

    def build(self, final: bool, gateway: dict[str, Any] | None = None) -> dict[str, Any]:
        """The report of the figures so far (live: the web UI, Prometheus, the breach checks)."""
        fig = self.figures
        return build_report(fig.total, open_sessions=fig.open_sessions(), run=self.run_info(),
                            drift=fig.drift(self.options.series_interval),
                            saturation=self.verdict.saturation(fig.cpu_samples), gateway=gateway,
                            lag_limit_ms=self.options.lag_limit)

    def finish(self, defer_summary: bool = False) -> int:
        """Close the last window, judge the run, write every report, print the summary; the exit code."""
        self.outputs.append_row(self.figures.close_window())
        report = self.build(final=True, gateway=self.outputs.gateway_record(self.gateway))
        self.verdict.judge(report)
        return self.outputs.write(report, self.figures.series_rows, str(self.environment.host), defer_summary)

    def print_summary(self) -> None:
        self.outputs.print_summary()
