"""``Runtime``: what loadkit keeps in one Locust process (moved out of the plugin, unchanged).

Its configuration (options, profile, thresholds, transport), the
recorders and windows, the saturation and breach checks, the report and
the summary. The plugin's listeners (``loadkit.locust.plugin``) drive it
from Locust's events; users, the distributed ledger, the web UI and the
test-run bookkeeping read its attributes.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gevent
import orjson
from locust.runners import MasterRunner, WorkerRunner

from loadkit.errors import ConfigError
from loadkit.locust import checks, options, testruns
from loadkit.locust.outputs import write_outputs
from loadkit.metrics.recorder import HARNESS_SERIES, Recorder
from loadkit.protocol.base import auth_styles, check_keepalive
from loadkit.report.build import build_report, verdict_of, verdict_reason
from loadkit.report.exitcodes import verdict_exit_code
from loadkit.report.harness import harness_section
from loadkit.report.model import ThresholdRow
from loadkit.report.summary import render_summary
from loadkit.session import LiveSessions
from loadkit.settings import behaviour
from loadkit.transport import GeventTransport

logger = logging.getLogger("loadkit")

#: A run that ends this close to its planned -t ran as planned. The time is counted from
#: the plugin's ``init`` (``timer_floor_mono``), which Locust runs before it starts its -t
#: timer: the timer cannot fire earlier than ``init + -t``, however long the spawn or our
#: test_start listener took (seen: 3 s on a busy CI machine, which made a -t stop look
#: like a quit and the verdict "interrupted").
PLANNED_SLACK_S = 1.0


class Runtime:
    """Everything loadkit keeps in one Locust process."""

    def __init__(self, environment: Any, opts: Any, scenario: Any = None) -> None:
        self.environment = environment
        self.opts = opts
        #: the ``[tool.loadkit]`` table of Locust's ``--config`` file, if any
        self.scenario = scenario
        self.configure()
        marks = self.settings.survival_marks
        self.recorder = Recorder(marks)  # this process's users record here
        self.total = Recorder(marks)     # merged: the whole run (local or master)
        self.window = Recorder(marks)    # merged: the current time-series window
        self.live = LiveSessions()
        self.worker_open: dict[str, int] = {}
        self.gateway: Any = None
        self.series_rows: list[dict[str, Any]] = []
        self.drift_first: dict[str, dict[str, Any]] = {}
        self.drift_last: dict[str, dict[str, Any]] = {}
        self.cpu_samples: list[float] = []
        #: threshold expression -> when its current unbroken breach began (monotonic)
        self.breach_since: dict[str, float] = {}
        self.started_wall: float | None = None
        self.started_mono: float | None = None
        #: no -t stop can come before this + -t: the plugin's init for the first test (Locust
        #: starts the -t timer after it), each later test's own start in the web UI
        self.timer_floor_mono = time.monotonic()
        self.window_started: float | None = None
        self.ticker: gevent.Greenlet | None = None
        #: why the run stopped before its planned run time, if it did: {"by", "why"}
        self.aborted: dict[str, Any] | None = None
        #: the summary, printed once Locust has printed its own final tables
        self.summary_text: str | None = None
        self.finished = False
        #: web UI: the tests started so far, whether this one's report is claimed, its exit code
        self.test_no = 0
        self.test_done = False
        self.last_code: int | None = None
        #: the gateway's stats when the test (or a RESET) began: its record is the delta from here
        self.gateway_baseline: dict[str, Any] | None = None
        self.outputs = opts  # the report paths of this test (numbered from the second)
        #: monotonic time the run began to stop; the signal that stopped it, if one did
        self.stopped_mono: float | None = None
        self.signalled: str | None = None
        self._fire = environment.events.request.fire

    def configure(self) -> None:
        """(Re)build everything that follows from the options; ConfigError if they are bad.

        Called at ``init`` and again at each ``test_start``: the web UI may
        have changed the options, and a worker only gets the master's values
        in its spawn message.
        """
        from loadkit.report import thresholds

        opts = self.opts
        self.options = options.settings_from(opts)
        self.settings = self.options.settings
        checks.check_users(opts)
        self.profile = checks.make_profile(self.scenario, self.options.protocol)
        self.thresholds = thresholds.parse_all(self.options.threshold)
        s = self.settings
        check_keepalive(self.profile, s.keepalive_s)
        styles = auth_styles(self.profile)
        for name, weight in s.guest_mix:
            style = behaviour(name).auth_style
            if weight > 0 and style not in styles:
                raise ConfigError(f"--guest-mix: the {self.profile.name} profile cannot send the {name!r} "
                                  f"guest's auth ({style}); remove it from the mix")
        old = getattr(self, "transport", None)
        if old is not None:
            old.close()
        self.transport = GeventTransport(open_timeout=s.connect_timeout_s, close_timeout=s.close_timeout_s,
                                         ssl_context=checks.tls_context(self.options.tls_ca))
        recorder = getattr(self, "recorder", None)
        if recorder is not None and recorder.marks != s.survival_marks:
            recorder.detach()  # a new test: what the old one recorded was shipped or reset
            recorder.marks = s.survival_marks

    # -- the hot path's one Locust call ------------------------------------------

    def report(self, name: str, ms: float, error: BaseException | None, length: int) -> None:
        self._fire(request_type="WS", name=name, response_time=ms, response_length=length,
                   exception=error, context=None)

    # -- aggregation --------------------------------------------------------------

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment.runner, WorkerRunner)

    @property
    def is_master(self) -> bool:
        return isinstance(self.environment.runner, MasterRunner)

    def collect_local(self) -> None:
        """Move what local users recorded into the run and window totals."""
        if self.is_master:
            return
        delta = self.recorder.detach()
        self.total.merge(delta)
        self.window.merge(delta)

    def absorb(self, delta: Recorder) -> None:
        self.total.merge(delta)
        self.window.merge(delta)

    def open_sessions(self) -> int:
        if self.is_master:
            return sum(self.worker_open.values())
        return self.live.open

    # -- time series --------------------------------------------------------------

    def reset(self) -> None:
        marks = self.settings.survival_marks
        self.recorder.detach()
        self.total = Recorder(marks)
        self.window = Recorder(marks)
        self.series_rows = []
        self.drift_first, self.drift_last = {}, {}
        self.cpu_samples = []
        self.breach_since = {}
        self.aborted = None
        self.stopped_mono = None
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        if self.test_no:
            self.timer_floor_mono = self.started_mono
        self.window_started = self.started_mono
        self.finished = False
        self.test_no += 1
        self.test_done, self.last_code = False, None
        self.outputs = testruns.outputs_of(self.opts, self.test_no)
        self.gateway_baseline = self.gateway.stats() if self.gateway is not None else None
        path = self.outputs.loadkit_series
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"")

    def close_window(self) -> dict[str, Any] | None:
        self.collect_local()
        now = time.monotonic()
        if self.window_started is None or self.started_mono is None:
            return None
        w = self.window
        span = now - self.window_started
        if span <= 0.05 and w.is_empty():
            return None
        latency = {}
        for phase, hist in w.latency.items():
            if hist and phase not in HARNESS_SERIES:
                summary = hist.summary_ms((50, 95, 99))
                latency[phase] = summary
                entry = {k: summary[k] for k in ("p50", "p95", "p99")}
                self.drift_first.setdefault(phase, entry)
                self.drift_last[phase] = entry
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
        ledger = getattr(self, "ledger", None)
        revived = ledger.take_revived() if ledger is not None else 0
        if revived:  # counted lost_with_worker in an earlier row, then the worker spoke again
            row["revived"] = revived
        self.series_rows.append(row)
        self.window = Recorder(self.settings.survival_marks)
        self.window_started = now
        path = self.outputs.loadkit_series
        if path:
            with open(path, "ab") as fh:  # append and flush: a killed soak keeps its windows
                fh.write(orjson.dumps(row) + b"\n")
                fh.flush()
        return row

    def tick_forever(self) -> None:
        interval = self.options.series_interval
        while True:
            gevent.sleep(interval)
            try:
                self.close_window()
                self.check_breach()
            except Exception:
                logger.exception("loadkit: time-series window failed")

    # -- verdict ------------------------------------------------------------------

    def saturation(self) -> dict[str, Any]:
        samples = self.cpu_samples[1:]  # Locust's first sample is always 0
        high = self.options.saturation_cpu
        above = sum(1 for c in samples if c > high)
        share = above / len(samples) if samples else 0.0
        return {
            "max_cpu_percent": max(samples) if samples else None,
            "samples": len(samples),
            "cpu_limit_percent": high,
            "share_saturated": round(share, 4),
            "limit": self.options.saturation_limit,
            "valid": share <= self.options.saturation_limit,
        }

    def check_breach(self) -> None:
        if not (self.options.abort_on_breach and self.thresholds) or self.aborted:
            return
        if self.started_mono is None:
            return
        from loadkit.report import thresholds

        live = self.build(final=False)
        rows = thresholds.evaluate_partial(self.thresholds, live)
        for r in rows:  # a breach that came back under its limit starts its grace again
            if r["passed"] is not False:
                self.breach_since.pop(r["expr"], None)
        if time.monotonic() - self.started_mono < self.options.breach_grace:
            rows = [r for r in rows if r.get("settled")]
        breached = [r for r in rows if r["passed"] is False and self._breach_counts(r)]
        if breached:
            why = "; ".join(f"{r['expr']} (value {r['value']:.4g})" for r in breached)
            self.aborted = {"by": "breach", "why": f"--abort-on-breach: {why}",
                            "at_mono": time.monotonic()}
            logger.error("loadkit: threshold breached, stopping the run: %s", why)
            runner = self.environment.runner
            gevent.spawn_later(0, runner.quit)

    def _breach_counts(self, row: ThresholdRow) -> bool:
        """A settled breach stops the run at once; an unsettled one once it has lasted the grace time.

        docs/thresholds.md: a count that only grows cannot come back under its
        limit (settled); a rate or a percentile may, so it must be breached
        in every check for ``--breach-grace`` seconds (sustained) first.
        """
        now = time.monotonic()
        since = self.breach_since.setdefault(row["expr"], now)
        if row.get("settled"):
            return True
        return now - since >= self.options.breach_grace

    def redact(self, text: str) -> str:
        """Secrets from the scenario file never reach a summary or a report."""
        return self.scenario.redact(text) if self.scenario is not None else text

    def run_info(self) -> dict[str, Any]:
        ended = time.time()
        started = self.started_wall or ended
        env = self.environment
        opts = self.opts
        return {
            "started_at": _iso(started),
            "ended_at": _iso(ended),
            "duration_s": round(ended - started, 3),
            "host": env.host,
            "profile": self.profile.name,
            "embedded_gateway": self.gateway is not None,
            "users": getattr(opts, "num_users", None),
            "workers": {"count": len(self.worker_open), "lost": sorted(getattr(self, "lost_workers", [])),
                        "left": [{"worker": w, "why": why}
                                 for w, why in sorted(getattr(self, "left_workers", {}).items())]},
            "settings": {**self.settings.as_dict(), "thresholds": list(self.options.threshold)},
            "seed": getattr(self, "run_seed", None),
            "planned_s": self.planned_s(),
            "aborted": self.aborted_info(ended),
        }

    def planned_s(self) -> float | None:
        """The planned run time (``-t``), or None (a web UI run stopped by a person)."""
        value = getattr(self.opts, "run_time", None)
        return float(value) if value else None

    def aborted_info(self, ended_wall: float) -> dict[str, Any] | None:
        """``run.aborted``: when and why a run stopped before its planned time, or None.

        Locust's ``-t`` ends the run at the planned time. A SIGINT (Ctrl-C) or
        SIGTERM before that interrupted it; so did any other quit that came
        before Locust's -t timer could have fired (``timer_floor_mono`` + -t,
        less the slack). One-sided on purpose: a slow start never turns a -t
        stop into "interrupted". A run with no ``-t`` has no planned end, so
        a person stopping it did not interrupt it.
        """
        started = self.started_mono
        planned = self.planned_s()
        stopped = self.stopped_mono or time.monotonic()
        after = None if started is None else round(stopped - started, 3)
        info = dict(self.aborted) if self.aborted else None
        if info is None and planned and self.signalled:
            info = {"by": "signal", "why": self.signalled}
        elif info is None and planned and started is not None and \
                stopped - self.timer_floor_mono < planned - PLANNED_SLACK_S:
            info = {"by": "stop", "why": "stopped before the planned run time (a quit, not -t)"}
        if info is None:
            return None
        info.pop("at_mono", None)
        info.update(when=_iso(ended_wall), after_s=after, planned_s=planned)
        return info

    def build(self, final: bool, gateway: dict[str, Any] | None = None) -> dict[str, Any]:
        drift = {"window_s": self.options.series_interval, "windows": len(self.series_rows),
                 "first": self.drift_first, "last": self.drift_last}
        return build_report(self.total, open_sessions=self.open_sessions(), run=self.run_info(),
                            drift=drift, saturation=self.saturation(), gateway=gateway,
                            lag_limit_ms=self.options.lag_limit)

    def finish(self, defer_summary: bool = False) -> int:
        """Close the last window, write every report, print the summary; the exit code."""
        from loadkit.report import thresholds

        self.close_window()
        gateway_stats = None
        if self.gateway is not None:
            try:
                gateway_stats = self.gateway.stats()
                deadline = time.monotonic() + 3.0
                while gateway_stats["sessions"]["open"] and time.monotonic() < deadline:
                    gevent.sleep(0.05)  # the gateway records a close when its handler ends
                    gateway_stats = self.gateway.stats()
                gateway_stats = testruns.gateway_delta(self.gateway_baseline, gateway_stats)
            except Exception as exc:  # the summary still matters more
                logger.warning("loadkit: could not read the gateway's stats: %s", exc)
        report = self.build(final=True, gateway=gateway_stats)
        report["thresholds"] = thresholds.evaluate(self.thresholds, report)
        report["verdict"] = verdict_of(report)
        report["verdict_reason"] = verdict_reason(report, report["verdict"])
        write_outputs(report, self.series_rows, self.outputs, self.redact)
        self.summary_text = self.redact(render_summary(report))
        if not defer_summary:
            self.print_summary()
        reason = self.redact(report["verdict_reason"])
        if report["verdict"] == "unreachable":
            print(f"loadkit: target {self.redact(str(self.environment.host))} unreachable: {reason}",
                  file=sys.stderr, flush=True)
        elif report["verdict"] == "error":
            print(f"loadkit: ERROR: {reason}", file=sys.stderr, flush=True)
        return int(verdict_exit_code(report["verdict"]))

    def print_summary(self) -> None:
        """The loadkit summary: the last thing on the terminal, after Locust's final tables."""
        if self.summary_text is not None:
            print(self.summary_text, flush=True)
            self.summary_text = None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
