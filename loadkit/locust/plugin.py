"""The Locust plugin: options, events, metrics collection, reports and verdicts.

Importing this module registers loadkit with Locust (the locustfile only
imports it). Locust is reached through its events only:

- ``init_command_line_parser``: loadkit's options;
- ``init``: validate options, build the per-process ``Runtime``, start the
  embedded gateway when no host is given (once: never on a worker);
- ``test_start``: start the time-series windows (local run or master);
- ``report_to_master`` / ``worker_report``: workers ship metric deltas, the
  master merges them (see ``loadkit.locust.distributed``);
- ``usage_monitor``: harness CPU, for the saturation verdict;
- ``quitting``: the final report, written once nothing is in flight.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gevent
import psutil
import orjson
from locust import events
from locust import runners
from locust.runners import MasterRunner, WorkerRunner

from loadkit.errors import ConfigError
from loadkit.locust import embedded, lag, options, prometheus, testruns
from loadkit.metrics.recorder import HARNESS_SERIES, Recorder
from loadkit.protocol import get_profile
from loadkit.config import Scenario
from loadkit.protocol.base import Profile, ProfileOptionError, auth_styles, check_keepalive
from loadkit.settings import behaviour
from loadkit.report.build import build_report, verdict_of, verdict_reason
from loadkit.report.harness import harness_section
from loadkit.report.exitcodes import verdict_exit_code
from loadkit.report.summary import render_summary
from loadkit.session import LiveSessions
from loadkit.streams import new_seed
from loadkit.transport import GeventTransport

logger = logging.getLogger("loadkit")

# Locust samples CPU every 10 s by default; a 30-second run would get two
# samples, the first always 0. Sample every 2 s for the saturation verdict.
runners.CPU_MONITOR_INTERVAL = 2.0
#: A run that ends this close to its planned -t ran as planned: Locust starts its -t timer
#: before our test_start listener runs, on a busy machine a second or more earlier.
PLANNED_SLACK_S = 3.0


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
        _check_users(opts)
        self.profile = _make_profile(self.scenario, self.options.protocol)
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
                                         ssl_context=_tls_context(self.options.tls_ca))
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

    def _breach_counts(self, row: dict[str, Any]) -> bool:
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
        SIGTERM before that interrupted it; so did any other quit well before
        the planned time (by more than the slack: Locust starts its timer a
        little before our clock). A run with no ``-t`` has no planned end, so
        a person stopping it did not interrupt it.
        """
        started = self.started_mono
        planned = self.planned_s()
        after = None if started is None else round((self.stopped_mono or time.monotonic()) - started, 3)
        info = dict(self.aborted) if self.aborted else None
        if info is None and planned and self.signalled:
            info = {"by": "signal", "why": self.signalled}
        elif info is None and planned and after is not None and after < planned - max(PLANNED_SLACK_S,
                                                                                       0.1 * planned):
            info = {"by": "stop", "why": "stopped well before the planned run time (a quit, not -t)"}
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
        if report["verdict"] in ("unreachable", "error"):
            print(f"loadkit: {report['verdict'].upper()}: {self.redact(report['verdict_reason'])}",
                  file=sys.stderr, flush=True)
        return int(verdict_exit_code(report["verdict"]))

    def print_summary(self) -> None:
        """The loadkit summary: the last thing on the terminal, after Locust's final tables."""
        if self.summary_text is not None:
            print(self.summary_text, flush=True)
            self.summary_text = None


def _make_profile(scenario: Scenario | None, name: str) -> Profile:
    """The chosen profile; a profile whose options are missing is one line pointing at the scenario file."""
    try:
        return scenario.make_profile(name) if scenario is not None else get_profile(name)
    except ProfileOptionError as exc:
        if scenario is not None and name == (scenario.profile or "guest"):
            raise  # the scenario's own options: every problem, one per line
        keys = ", ".join(key for key, _value, _expected in exc.problems)
        raise ConfigError(f"--protocol {name}: the {name} profile needs its options ({keys}): give them in the "
                          f"[tool.loadkit.profile] table of a scenario file, --config FILE.toml "
                          f"(see docs/profiles.md)") from None


def _check_users(opts: Any) -> None:
    """``-u 0`` or fewer measures nothing: bad input, not a run that passes."""
    users = getattr(opts, "num_users", None)
    if users is not None and users < 1:
        raise ConfigError(f"-u/--users must be at least 1, got {users}")


def _tls_context(ca: str) -> Any:
    """Verification for https:// targets: the system's CAs, or ``--tls-ca``."""
    if not ca:
        return None
    import ssl

    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-ca {ca!r}: cannot load CA certificates ({exc.strerror or exc})") from None


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


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _apply_scenario(environment: Any, opts: Any) -> Any:
    """Load ``[tool.loadkit]`` from Locust's ``--config`` TOML and apply it under the command line.

    Precedence: command line > scenario file > defaults. Locust itself reads
    the same file's ``[tool.locust]`` table.
    """
    path = getattr(opts, "config", None)
    if not path or not str(path).endswith(".toml"):
        return None
    from loadkit.config import load_scenario

    scenario = load_scenario(path)
    given = set(options.given(opts))
    if getattr(opts, "host", None):  # Locust's own option: None unless given
        given.add("host")
    applied = scenario.apply_to(opts, given)
    if "host" in applied:
        environment.host = opts.host
    return scenario


#: Where the master puts the run's seed for its workers: Locust copies every
#: non-Locust attribute of ``parsed_options`` into each worker's spawn message.
RUN_SEED_OPTION = "loadkit_run_seed"


def _choose_seed(rt: Any) -> None:
    """The seed of this run: ``--loadkit-seed``, else a fresh one (the report records it).

    A worker takes the master's, which arrived with the spawn message before
    ``test_start``; the master (or a local run) draws a new one per run.
    """
    opts = rt.opts
    if rt.is_worker:
        seed = getattr(opts, RUN_SEED_OPTION, None)
        rt.run_seed = int(seed) if seed is not None else rt.settings.seed
        if rt.run_seed is None:  # a master that does not send one: still apart from the others
            rt.run_seed = new_seed()
        return
    rt.run_seed = rt.settings.seed if rt.settings.seed is not None else new_seed()
    setattr(opts, RUN_SEED_OPTION, rt.run_seed)


def _die(environment: Any, message: str) -> None:
    """Bad input: one line, exit 2, no traceback; quiet on --processes children (the parent says it)."""
    forked = bool(getattr(environment.parsed_options, "processes", None))
    if forked and isinstance(environment.runner, WorkerRunner):
        sys.exit(2)
    print(f"loadkit: error: {message}", file=sys.stderr, flush=True)
    if forked:
        _end_forked_workers()
    sys.exit(2)


def _end_forked_workers() -> None:
    """End the ``--processes`` children this master forked, by PID, before it exits on bad input.

    They may still be waiting to connect to it (they reach ``init``, and
    their own quiet exit, only once connected), and Locust's exit handler
    would leave them retrying for a minute.
    """
    children = psutil.Process().children()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    deadline = time.monotonic() + 3.0  # not reaped here: Locust's exit handler waits for them
    while time.monotonic() < deadline and any(_running(c) for c in children):
        time.sleep(0.05)
    for child in children:
        if _running(child):
            with contextlib.suppress(psutil.Error):
                child.kill()


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # gone
        return False


# -- listeners ------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _register_options(parser: Any, **_kw: Any) -> None:
    options.register(parser)


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # a library use of Locust without the command line
        return
    try:
        scenario = _apply_scenario(environment, opts)
        rt = Runtime(environment, opts, scenario)
        if environment.host:
            environment.host = options.validate_host(environment.host)
    except ConfigError as exc:
        _die(environment, str(exc))
        return
    environment.loadkit = rt
    from loadkit.locust import distributed

    distributed.install(environment, rt)
    lag.install(environment, rt)
    if not rt.is_worker and not environment.host:
        try:
            rt.gateway = embedded.start(list(rt.options.gateway_set))
        except ConfigError as exc:
            _die(environment, str(exc))
        environment.host = rt.gateway.url

    if getattr(environment, "web_ui", None) is not None and not rt.is_worker:
        from loadkit.locust import webform, webui

        webui.install(environment.web_ui, rt)
        webform.install(environment.web_ui, environment, rt)
    if not rt.is_worker:
        testruns.install(environment, rt)
        try:
            prometheus.install(environment, rt)
        except ConfigError as exc:
            _die(environment, str(exc))

    events_ = environment.events

    @events_.test_start.add_listener
    def _on_test_start(**_kw: Any) -> None:
        try:
            rt.configure()  # again: the web UI skips type=, workers get the master's options
            if environment.host:
                environment.host = options.validate_host(environment.host)
        except ConfigError as exc:
            logger.error("loadkit: %s", exc)
            gevent.spawn_later(0, environment.runner.quit)
            return
        _choose_seed(rt)
        if rt.is_worker:
            return
        rt.reset()
        if rt.ticker is None:
            rt.ticker = gevent.spawn(rt.tick_forever)

    @events_.usage_monitor.add_listener
    def _on_usage(environment: Any, cpu_usage: float, **_kw: Any) -> None:
        if rt.is_master:
            samples = [c.cpu_usage for c in environment.runner.clients.values()] + [cpu_usage]
            rt.cpu_samples.append(max(samples))
        elif not rt.is_worker:
            rt.cpu_samples.append(cpu_usage)

    @events_.quitting.add_listener
    def _on_quitting(environment: Any, **_kw: Any) -> None:
        if rt.is_worker or rt.finished:  # SIGTERM on a master fires quitting twice
            return
        rt.finished = True
        rt.stopped_mono = time.monotonic()
        runner = environment.runner
        if runner is not None:
            runner.stop()  # before the gateway goes: users must not see it vanish
        if rt.is_master:
            distributed.await_final_reports(environment, rt)
        if rt.ticker is not None:
            rt.ticker.kill(block=False)
        if rt.test_done:  # the web UI's last test has (or is writing) its report already
            deadline = time.monotonic() + 30
            while rt.last_code is None and time.monotonic() < deadline:
                gevent.sleep(0.05)
            if rt.gateway is not None:
                rt.gateway.stop()
            environment.process_exit_code = rt.last_code if rt.last_code is not None else 5
            return
        try:
            code = rt.finish(defer_summary=True)  # printed at quit, after Locust's final tables
        except Exception:
            logger.exception("loadkit: could not finish the report")
            code = 5
        finally:
            if rt.gateway is not None:
                rt.gateway.stop()
        environment.process_exit_code = code

    @events_.quit.add_listener
    def _on_quit(**_kw: Any) -> None:
        rt.print_summary()  # Locust has printed its final tables by now

    _note_signals(rt)


def _note_signals(rt: Runtime) -> None:
    """Remember which signal stopped the run (for ``run.aborted.why``), then let Locust handle it."""
    import signal

    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        rt.signalled = rt.signalled or "SIGINT (Ctrl-C)"
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_sigint)
        gevent.signal_handler(signal.SIGTERM, lambda: setattr(rt, "signalled", rt.signalled or "SIGTERM"))
    except ValueError:  # not the main thread (a library use): no signals to note
        pass
