"""What the plugin does once at ``init`` and at each ``test_start`` besides wiring listeners.

- ``apply_scenario``: the ``[tool.loadkit]`` table of Locust's ``--config``
  TOML, under the command line;
- ``choose_seed``: the run's seed (``--loadkit-seed`` or a fresh one), which
  a master hands to its workers;
- ``die``: bad input at ``init``: one line, exit 2, no traceback (and no
  ``--processes`` children left retrying for a minute).
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import psutil
from locust.runners import WorkerRunner

from loadkit.locust import options
from loadkit.streams import new_seed

__all__ = ["RUN_SEED_OPTION", "apply_scenario", "choose_seed", "die"]


def apply_scenario(environment: Any, opts: Any) -> Any:
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


def choose_seed(rt: Any) -> None:
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


def die(environment: Any, message: str) -> None:
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
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:  # gone
        return False



def note_signals(rt: Any) -> None:
    """Remember which signal stopped the run (for ``run.aborted.why``), then let Locust handle it."""
    import signal

    import gevent

    previous = signal.getsignal(signal.SIGINT)
    verdict = rt.verdict

    def on_sigint(signum: int, frame: Any) -> None:
        verdict.signalled = verdict.signalled or "SIGINT (Ctrl-C)"
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    def on_sigterm() -> None:
        verdict.signalled = verdict.signalled or "SIGTERM"

    try:
        signal.signal(signal.SIGINT, on_sigint)
        gevent.signal_handler(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (a library use): no signals to note
        pass
