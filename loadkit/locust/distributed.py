"""loadkit metrics across Locust workers: deltas up, exact merge on the master.

Theory of operation
-------------------
Workers ship what they recorded since their last report
(``Recorder.detach``) in Locust's ``report_to_master`` every few seconds,
together with their open-sessions gauge, and one *final* message once their
users have stopped (at ``test_stop``). The master adds every delta into the
run total (``loadkit.locust.ledger.Ledger``), so counters are exact and
percentiles come from merged histograms only; the open-sessions gauge is the
sum of the workers' last gauges.

Each delta and its gauge are taken at the same instant on the worker, so for
every worker ``started == ended + open`` holds at every report, and the sum
over workers holds on the master.

Why the final message, and the wait for it: on ``-t`` (or an aborted run)
Locust's master calls ``runner.quit()``, which fires ``test_stop`` at once,
tells the workers "quit" and stops listening half a second later, so the
workers' last numbers would arrive after the master has written its
summary. The master's ``test_stop`` listener (``await_final_reports``) runs
inside that ``quit()``, before the workers are told anything: it asks every
worker still running to stop its users (the ``loadkit_stop`` message, a
Locust custom message), and waits, bounded by ``FINAL_WAIT_S``, until every
worker that took part has sent its final numbers or is gone; only then does
Locust's ``quit()`` go on. Every other end runs through the same listener:
a ``runner.stop()`` (the web UI's STOP, the plugin's ``quitting`` listener on
Ctrl-C or SIGTERM) fires ``test_stop`` once the workers have stopped. The
wait never sleeps in the greenlet that delivers the workers' messages
(Locust stops the run from there when the last worker quits; by then every
worker's final numbers are in or it is gone). A worker sends its final
numbers once all its sessions have ended (bounded by ``FINAL_SETTLE_S``) and
before it tells the master "client_stopped" or "quit", on the same
connection, so a worker that has left the master's list without them is gone.

Workers that leave or die: a worker that quits in good order sends its final
numbers first, so nothing is lost. A worker that dies (SIGKILL, OOM, a lost
machine) or freezes stops sending heartbeats and Locust marks it missing
after about three seconds; the master then *writes it off*: the counts it
already reported stay, its gauge is dropped, and the sessions it still had
open at its last report are counted as ended with outcome
``lost_with_worker`` (phase ``unknown``), so ``started == ended + open``
still holds. The worker is named in ``run.workers.lost``, and the run is
``invalid``. Should a written-off worker speak again (a long pause, not a
death), the write-off is undone and its numbers flow on as before.

The target: Locust gives every worker the master's ``--host`` in each spawn
message (a worker's own ``--host`` is overwritten), so workers on the
master's machine reach the embedded gateway, and the master of a run across
machines needs a ``--host`` that every worker can reach. A worker on another
machine that is sent to a loopback address says so in its log.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from loadkit.locust.ledger import LOST_OUTCOME, LOST_PHASE, STATE_MISSING, Ledger
from loadkit.locust.listen import on

# Locust and gevent are imported where they are used, so that the ``Ledger``
# can be tested in a plain process (importing Locust monkey-patches it).

__all__ = ["FINAL_WAIT_S", "LOST_OUTCOME", "LOST_PHASE", "MASTER_LOST_EXIT_CODE", "MASTER_LOST_S", "Ledger",
           "await_final_reports", "install", "quit_stragglers"]

logger = logging.getLogger("loadkit")

FINAL_MESSAGE = "loadkit_final"
#: The master asks a worker still running users to stop them (and so to send its final numbers).
STOP_MESSAGE = "loadkit_stop"
#: How long the master waits for workers' final numbers once the run began to stop.
FINAL_WAIT_S = 15.0
#: How long a worker waits for its sessions to end before it sends its final numbers anyway.
FINAL_SETTLE_S = 5.0
#: How often the master looks for workers that went missing or left (and a worker for its master).
WATCH_INTERVAL_S = 0.5
#: A worker in a run that hears no heartbeat from its master for this long
#: (the master answers every worker heartbeat, once a second) stops its users
#: and exits with ``MASTER_LOST_EXIT_CODE``. Its sessions are closed within
#: MASTER_LOST_S + WATCH_INTERVAL_S + --close-timeout of the master's last sign of life.
MASTER_LOST_S = 5.0
#: The run lost its master: its results are incomplete (``invalid``).
MASTER_LOST_EXIT_CODE = 4

_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def install(environment: Any, rt: Any) -> None:
    """Wire loadkit's distributed behaviour into this process's runner (any kind)."""
    from locust import runners

    if runners.STATE_MISSING != STATE_MISSING:  # pragma: no cover - a Locust we don't know
        raise RuntimeError(f"locust.runners.STATE_MISSING is {runners.STATE_MISSING!r}, not {STATE_MISSING!r}")
    runner = environment.runner
    if isinstance(runner, runners.WorkerRunner):
        _install_worker(environment, rt, runner)
    elif isinstance(runner, runners.MasterRunner):
        _install_master(environment, rt, runner)


# -- worker ---------------------------------------------------------------------------


def _install_worker(environment: Any, rt: Any, runner: Any) -> None:
    import gevent
    from locust.runners import STATE_INIT, STATE_RUNNING, STATE_SPAWNING, STATE_STOPPED

    events = environment.events
    me = {"pid": os.getpid(), "hostname": socket.gethostname()}
    state: dict[str, Any] = {"in_run": False, "final_sent": True, "warned": False}

    def payload() -> dict[str, Any]:
        # detach and read the gauge with no switch in between: one instant
        return {"delta": rt.recorder.detach().to_wire(), "open": rt.live.open,
                "in_run": state["in_run"], **me}

    @on(events.test_start)
    def _started(**_kw: Any) -> None:
        state["in_run"], state["final_sent"] = True, False
        _warn_if_unreachable(environment, state)

    @on(events.report_to_master)
    def _ship(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        data["loadkit"] = payload()

    @on(events.test_stop)
    def _final(**_kw: Any) -> None:
        # Two stops can overlap (Ctrl-C on this worker while the master says
        # "stop"): the first test_stop may come while the other stop is
        # still ending sessions. The final numbers wait, bounded, until every
        # session has ended, and go out once per run, before this handler
        # returns, so before Locust's "client_stopped" or "quit".
        if state["final_sent"]:
            return
        deadline = time.monotonic() + FINAL_SETTLE_S
        while rt.live.open and time.monotonic() < deadline:
            gevent.sleep(0.02)
        if state["final_sent"]:
            return
        state["in_run"], state["final_sent"] = False, True
        if rt.live.open:
            logger.warning("loadkit: %d session(s) still open %g s after the users stopped",
                           rt.live.open, FINAL_SETTLE_S)
        runner.send_message(FINAL_MESSAGE, payload())

    def _stop_for_master(**_kw: Any) -> None:
        # The master is ending the run (-t, an abort): stop the users; the
        # test_stop above sends the final numbers. A stop already under way
        # sends them itself.
        if runner.state in (STATE_SPAWNING, STATE_RUNNING):
            runner.stop()

    # concurrent: the stop waits for sessions to end, and this worker must
    # go on reading the master's heartbeats meanwhile
    runner.register_message(STOP_MESSAGE, _stop_for_master, concurrent=True)

    def _watch_master() -> None:
        # Locust's own rule is 60 s without the master's heartbeat, and then
        # exit 0: a minute of load on the target that nobody will report.
        while True:
            gevent.sleep(WATCH_INTERVAL_S)
            last = runner.last_heartbeat_timestamp
            if not state["in_run"] or last is None:
                continue
            silent = time.time() - last
            if silent < MASTER_LOST_S:
                continue
            users = runner.user_count
            logger.error("loadkit: lost the master at %s:%s (no heartbeat for %.0f s): stopping %d user(s), "
                         "closing their sessions with 1001, and exiting with code %d",
                         runner.master_host, runner.master_port, silent, users, MASTER_LOST_EXIT_CODE)
            environment.process_exit_code = MASTER_LOST_EXIT_CODE
            state["in_run"] = False
            runner.stop()  # users end their sessions (close 1001); test_stop sends the final numbers
            runner.quit()  # ends the runner's greenlets: Locust shuts down with the code above
            return

    gevent.spawn(_watch_master)  # not in the runner's group: quit() kills that group

    @on(events.quitting)
    def _stop_before_leaving(**_kw: Any) -> None:
        # Quitting listeners run newest first, so this runs before Locust
        # tells the master "quit": the final numbers go out first.
        if runner.state not in (STATE_INIT, STATE_STOPPED):
            runner.stop()


def _warn_if_unreachable(environment: Any, state: dict[str, Any]) -> None:
    """A worker on another machine sent to the master's loopback can reach nothing.

    Locust gives every worker the master's host in each spawn message (a
    worker's own ``--host`` is overwritten), so the master's ``--host`` must
    be an address every worker can reach.
    """
    if state["warned"]:
        return
    opts = environment.parsed_options
    if _is_loopback(getattr(opts, "master_host", "127.0.0.1")):
        return
    if environment.host and _is_loopback(urlsplit(environment.host).hostname or ""):
        state["warned"] = True
        logger.warning(
            "loadkit: this worker runs apart from its master (%s) but the master's target %s is a "
            "loopback address: its sessions will go to this machine. Give the master a --host every "
            "worker can reach (the embedded gateway listens on the master's loopback only).",
            opts.master_host, environment.host)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in _LOOPBACK_NAMES or host.startswith("127.") or host == "::1"


# -- master ---------------------------------------------------------------------------


def _install_master(environment: Any, rt: Any, runner: Any) -> None:
    import gevent

    events = environment.events
    ledger = rt.ledger = Ledger(rt.figures)  # it adds into the run's figures (loadkit.locust.aggregation)
    rt.figures.take_revived = ledger.take_revived

    @on(events.test_start)
    def _new_run(**_kw: Any) -> None:
        ledger.new_run(cid for cid, node in runner.clients.items() if node.state != STATE_MISSING)

    @on(events.test_stopping)
    def _ending(**_kw: Any) -> None:
        ledger.ending = True

    @on(events.worker_report)
    def _merge(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        ledger.delivery = gevent.getcurrent()
        payload = data.get("loadkit")
        if payload:
            ledger.receive(client_id, payload)

    def _on_final(msg: Any, **_kw: Any) -> None:
        ledger.delivery = gevent.getcurrent()
        ledger.receive(msg.node_id, msg.data, final=True)

    runner.register_message(FINAL_MESSAGE, _on_final)

    # Every end of a run on the master fires test_stop: inside runner.quit()
    # (-t, an aborted run, the last worker quitting) before Locust tells the
    # workers "quit", and at the end of runner.stop() (the web UI's STOP, the
    # plugin's quitting listener). The report is written after it.
    @on(events.test_stop)
    def _await_finals(**_kw: Any) -> None:
        await_final_reports(environment, rt)

    def _watch() -> None:
        while True:
            gevent.sleep(WATCH_INTERVAL_S)
            if ledger.running:
                try:
                    ledger.check(runner.clients)
                except Exception:  # never let the watch die silently
                    logger.exception("loadkit: checking the workers failed")

    runner.greenlet.spawn(_watch)  # the runner's group: it ends with the runner


def await_final_reports(environment: Any, rt: Any) -> None:
    """Stop the workers' users and wait (bounded) for each worker's final numbers; write off the rest.

    Idempotent: once the run's end has been awaited, it returns at once.
    """
    ledger: Ledger | None = getattr(rt, "ledger", None)
    if ledger is None or ledger.settled:
        return
    import gevent

    runner = environment.runner
    ledger.ending = True
    for cid in sorted(ledger.running):
        _send(runner, STOP_MESSAGE, cid)
    # In the greenlet that delivers the workers' messages, sleeping would
    # hold back the very numbers it waits for: look once, do not wait.
    may_wait = ledger.delivery is None or gevent.getcurrent() is not ledger.delivery
    deadline = time.monotonic() + FINAL_WAIT_S
    while ledger.running and time.monotonic() < deadline:
        ledger.check(runner.clients)
        if not (ledger.running and may_wait):
            break
        gevent.sleep(0.05)
    why = (f"its final numbers did not come within {FINAL_WAIT_S:g} s" if may_wait
           else "its final numbers had not come when the run ended")
    for cid in sorted(ledger.running):
        ledger.write_off(cid, why)
    ledger.settled = True
    lost = ledger.rt.lost_workers
    if lost:
        logger.warning("loadkit: %d worker(s) lost during the run: %s; see outcome %s in the summary",
                       len(lost), ledger.names(lost), LOST_OUTCOME)


def quit_stragglers(environment: Any, rt: Any) -> None:
    """Tell "quit" to the run's workers that Locust's own quit will not reach.

    Locust's quit reaches the workers in its list only. A worker that was
    told Locust's "stop" (the web UI's STOP, or a stop on Ctrl-C) leaves that
    list for ``--stop-timeout`` seconds (between its "client_stopped" and its
    next "client_ready"), so with a stop timeout it would miss the quit and
    linger until the master's heartbeats stop (60 s). It reads this quit
    when that pause is over. Called by the plugin as the master quits.
    """
    ledger: Ledger | None = getattr(rt, "ledger", None)
    if ledger is None:
        return
    runner = environment.runner
    for cid in sorted(ledger.members - set(ledger.written_off) - set(runner.clients)):
        _send(runner, "quit", cid)


def _send(runner: Any, kind: str, cid: str) -> None:
    """One message to one worker; a worker that is gone is no error (the master ends all the same)."""
    from locust.exception import RPCError, RPCSendError

    try:
        runner.send_message(kind, None, cid)
    except (RPCError, RPCSendError) as exc:
        logger.debug("loadkit: could not send %s to worker %s: %s", kind, cid, exc)
