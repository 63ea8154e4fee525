"""The Locust plugin: loadkit's listeners on Locust's events.

Importing this module registers loadkit with Locust (the locustfile only
imports it). Locust is reached through its events only:

- ``init_command_line_parser``: loadkit's options (``loadkit.locust.options``);
- ``init``: apply the scenario file, validate options, build the per-process
  ``Runtime`` (``loadkit.locust.runtime``), start the embedded gateway when
  no host is given (once: never on a worker);
- ``test_start``: start the time-series windows (local run or master);
- ``report_to_master`` / ``worker_report``: workers ship metric deltas, the
  master merges them (see ``loadkit.locust.distributed``);
- ``usage_monitor``: harness CPU, for the saturation verdict;
- ``quitting``: the final report, written once nothing is in flight
  (``loadkit.locust.outputs``).

The one Locust setting with no public way to change it is in
``loadkit.locust.adapters``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any

import gevent
import psutil
from locust import events
from locust.runners import WorkerRunner

from loadkit.errors import ConfigError
from loadkit.locust import adapters, embedded, lag, options, prometheus, testruns
from loadkit.locust.outputs import write_outputs
from loadkit.locust.runtime import Runtime
from loadkit.streams import new_seed

__all__ = ["RUN_SEED_OPTION", "Runtime", "write_outputs"]

logger = logging.getLogger("loadkit")

adapters.install()


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
            rt.gateway = embedded.start(list(rt.options.gateway_set), protocol=rt.options.protocol)
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

    @events_.quit.add_listener
    def _on_quit(**_kw: Any) -> None:
        rt.print_summary()  # Locust has printed its final tables by now

    _note_signals(rt)
    # Last thing before Locust arms -t with gevent.spawn_later (see adapters.fresh_loop_clock).
    adapters.fresh_loop_clock()


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
