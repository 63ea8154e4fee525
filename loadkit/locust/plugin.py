"""The Locust plugin: loadkit's listeners on Locust's events, and nothing else.

Importing this module registers loadkit with Locust (the locustfile only
imports it). Locust is reached through its events only; each listener hands
its event to the job that owns it:

- ``init_command_line_parser``: loadkit's options (``loadkit.locust.options``);
- ``init``: apply the scenario file and validate the options
  (``loadkit.locust.startup``), build the per-process ``Runtime``
  (``loadkit.locust.runtime``), start the embedded gateway when no host is
  given (once: never on a worker), install the distributed ledger, the lag
  probe, the web UI tab and form, RESET handling and Prometheus;
- ``test_start``: configure again, choose the seed, start the figures and
  the time-series windows (local run or master);
- ``report_to_master`` / ``worker_report`` / ``test_stop``: workers ship
  metric deltas and their final numbers, the master merges them and waits
  for them (``loadkit.locust.distributed``);
- ``spawning_complete``: the steady state begins (drift's first side,
  ``loadkit.metrics.drift``);
- ``usage_monitor``: harness CPU, for the saturation verdict
  (``loadkit.locust.aggregation``);
- ``quitting``: the final report, written once nothing is in flight
  (``loadkit.locust.outputs``); ``quit``: the summary, after Locust's tables.

The one Locust setting with no public way to change it is in
``loadkit.locust.adapters``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust import events

from loadkit.errors import ConfigError
from loadkit.locust import adapters, distributed, embedded, lag, options, prometheus, request_stats, startup, testruns
from loadkit.locust.listen import on
from loadkit.locust.runtime import Runtime

__all__ = ["Runtime"]

logger = logging.getLogger("loadkit")

adapters.install()
# Here, at import, so that these run before the runner's own listeners (those added at ``init`` run
# after them): tallied timings go into this worker report, not the next, and a reset of Locust's
# statistics (``--reset-stats`` once spawned, the web UI's RESET) wipes them as it wipes the rest.
on(events.report_to_master)(request_stats.flush_all)
on(events.spawning_complete)(request_stats.flush_all)
on(events.reset_stats)(request_stats.flush_all)


@on(events.init_command_line_parser)
def _register_options(parser: Any, **_kw: Any) -> None:
    options.register(parser)


@on(events.init)
def _on_init(environment: Any, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # a library use of Locust without the command line
        return
    try:
        scenario = startup.apply_scenario(environment, opts)
        rt = Runtime(environment, opts, scenario)
        if environment.host:
            environment.host = options.validate_host(environment.host)
    except ConfigError as exc:
        startup.die(environment, str(exc))
        return
    environment.loadkit = rt
    distributed.install(environment, rt)
    lag.install(environment, rt)
    if not rt.is_worker and not environment.host:
        try:
            rt.gateway = embedded.start(list(rt.options.gateway_set), protocol=rt.options.protocol)
        except ConfigError as exc:
            startup.die(environment, str(exc))
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
            startup.die(environment, str(exc))
    _install_run_listeners(environment, rt)
    startup.note_signals(rt)
    # Last thing before Locust arms -t with gevent.spawn_later (see adapters.fresh_loop_clock).
    adapters.fresh_loop_clock()


def _install_run_listeners(environment: Any, rt: Runtime) -> None:
    """The listeners of a run: its start, the CPU samples, its end."""
    events_ = environment.events

    @on(events_.test_start)
    def _on_test_start(**_kw: Any) -> None:
        try:
            rt.configure()  # again: the web UI skips type=, workers get the master's options
            if environment.host:
                environment.host = options.validate_host(environment.host)
        except ConfigError as exc:
            logger.error("loadkit: %s", exc)
            gevent.spawn_later(0, environment.runner.quit)
            return
        startup.choose_seed(rt)
        if rt.is_worker:
            return
        rt.reset()
        if rt.ticker is None:
            rt.ticker = gevent.spawn(rt.tick_forever)

    @on(events_.spawning_complete)
    def _on_spawning_complete(**_kw: Any) -> None:
        if not rt.is_worker:
            rt.spawn_completed()

    @on(events_.test_stop)
    def _on_test_stop(**_kw: Any) -> None:
        rt.requests.flush()  # the users are stopped: Locust's final tables count every timing

    @on(events_.usage_monitor)
    def _on_usage(environment: Any, cpu_usage: float, **_kw: Any) -> None:
        if rt.is_master:
            rt.figures.sample_cpu(cpu_usage, [c.cpu_usage for c in environment.runner.clients.values()])
        elif not rt.is_worker:
            rt.figures.sample_cpu(cpu_usage, None)

    @on(events_.quitting)
    def _on_quitting(environment: Any, **_kw: Any) -> None:
        if rt.is_worker or rt.finished:  # SIGTERM on a master fires quitting twice
            return
        rt.finished = True
        rt.verdict.stopped_mono = time.monotonic()
        runner = environment.runner
        if runner is not None:
            runner.stop()  # before the gateway goes: users must not see it vanish
        rt.requests.close()
        if rt.is_master:
            distributed.await_final_reports(environment, rt)  # done already by test_stop, unless a stop is under way
            distributed.quit_stragglers(environment, rt)
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

    @on(events_.quit)
    def _on_quit(**_kw: Any) -> None:
        rt.print_summary()  # Locust has printed its final tables by now
