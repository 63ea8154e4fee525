"""loadkit metrics across Locust workers: deltas up, exact merge on the master.

Theory of operation
-------------------
Workers ship what they recorded since their last report
(``Recorder.detach``) in Locust's ``report_to_master`` every few seconds,
together with their open-sessions gauge, and one *final* message once their
users have stopped (at ``test_stop``). The master adds every delta into the
run total, so counters are exact and percentiles come from merged
histograms only; the open-sessions gauge is the sum of the workers' last
gauges.

Each delta and its gauge are taken at the same instant on the worker, so for
every worker ``started == ended + open`` holds at every report, and the sum
over workers holds on the master.

Why the final message: on ``-t``, Ctrl-C or SIGTERM Locust's master fires
``test_stop`` at once, tells the workers to quit and stops listening half a
second later, so the workers' last numbers can arrive after the master has
written its summary. The master therefore ends the run itself
(``await_final_reports``): it stops the users, waits (bounded) until every
worker that took part has sent its final numbers or is gone, and only then
lets Locust quit and the report be written. A worker sends its final
numbers once all its sessions have ended (bounded) and before it tells the
master "client_stopped" or "quit", on the same connection, so a worker that
has left the master's list without them is gone.

Workers that leave or die (the ``Ledger``): a worker that quits in good
order sends its final numbers first, so nothing is lost. A worker that dies
(SIGKILL, OOM, a lost machine) stops sending heartbeats and Locust marks it
missing after about three seconds; the master then *writes it off*: the
counts it already reported stay, its gauge is dropped, and the sessions it
still had open at its last report are counted as ended with outcome
``lost_with_worker`` (phase ``unknown``), so ``started == ended + open``
still holds. The worker is named in ``run.workers.lost``. Should a written-off
worker speak again (a long pause, not a death), the write-off is undone and
its numbers flow on as before.

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
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from loadkit.metrics.histogram import WireError
from loadkit.metrics.recorder import Recorder

# Locust and gevent are imported where they are used, so that the ``Ledger``
# can be tested in a plain process (importing Locust monkey-patches it).

logger = logging.getLogger("loadkit")

FINAL_MESSAGE = "loadkit_final"
#: How long the master waits for workers' final numbers once their users stopped.
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
#: The outcome (and phase) of sessions that were open on a worker when it died.
LOST_OUTCOME = "lost_with_worker"
LOST_PHASE = "unknown"

_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
#: Locust's name for a worker whose heartbeats stopped (``locust.runners.STATE_MISSING``).
STATE_MISSING = "missing"


def install(environment: Any, rt: Any) -> None:
    """Wire loadkit's distributed behaviour into this process's runner (any kind)."""
    from locust import runners

    if runners.STATE_MISSING != STATE_MISSING:  # pragma: no cover - a Locust we don't know
        raise RuntimeError(f"locust.runners.STATE_MISSING is {runners.STATE_MISSING!r}, not {STATE_MISSING!r}")
    runner = environment.runner
    rt.lost_workers = set()  # read by the plugin's run_info (run.workers.lost)
    rt.left_workers = {}  # worker -> why it did not stay to the end (run.workers.left)
    MasterRunner, WorkerRunner = runners.MasterRunner, runners.WorkerRunner
    if isinstance(runner, WorkerRunner):
        _install_worker(environment, rt, runner)
    elif isinstance(runner, MasterRunner):
        _install_master(environment, rt, runner)


# -- worker ---------------------------------------------------------------------------


def _install_worker(environment: Any, rt: Any, runner: Any) -> None:
    import gevent
    from locust.runners import STATE_INIT, STATE_STOPPED

    events = environment.events
    me = {"pid": os.getpid(), "hostname": socket.gethostname()}
    state = {"in_run": False, "final_sent": True, "warned": False}

    def payload() -> dict[str, Any]:
        # detach and read the gauge with no switch in between: one instant
        return {"delta": rt.recorder.detach().to_wire(), "open": rt.live.open,
                "in_run": state["in_run"], **me}

    @events.test_start.add_listener
    def _started(**_kw: Any) -> None:
        state["in_run"], state["final_sent"] = True, False
        _warn_if_unreachable(environment, state)

    @events.report_to_master.add_listener
    def _ship(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        data["loadkit"] = payload()

    @events.test_stop.add_listener
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

    @events.quitting.add_listener
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


class Ledger:
    """The master's book of the workers in the current run.

    ``rt`` is the plugin's ``Runtime`` (anything with ``absorb``, ``total``,
    ``window``, ``worker_open`` and ``lost_workers`` will do): the ledger adds
    deltas to its totals, keeps ``worker_open`` (the gauges) and
    ``lost_workers`` (the names in the report) up to date.
    """

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        #: workers that took part in the run
        self.members: set[str] = set()
        #: members whose final numbers are still due
        self.running: set[str] = set()
        #: written-off workers and the open sessions counted as lost for each
        self.written_off: dict[str, int] = {}
        #: pid and hostname each worker last told us
        self.info: dict[str, dict[str, Any]] = {}
        #: the end of the run has been awaited: the report may be written
        self.settled = False
        #: sessions taken back from write-offs in windows already closed
        self.revived = 0
        #: workers whose reports this master cannot read (another loadkit version), and why
        self.unreadable: dict[str, str] = {}
        #: the master has begun to end the run (finals after this are expected)
        self.ending = False

    def new_run(self, connected: Iterable[str]) -> None:
        """A run starts: the connected workers will take part (late joiners say so)."""
        connected = list(connected)
        self.members = set(connected)
        self.running = set(connected)
        self.written_off.clear()
        self.settled = False
        self.revived = 0
        self.ending = False
        self.rt.lost_workers.clear()
        self.rt.left_workers.clear()
        self.rt.worker_open.clear()
        self.rt.worker_open.update(dict.fromkeys(connected, 0))

    def receive(self, cid: str, payload: dict[str, Any], final: bool = False) -> None:
        """A worker's delta and gauge (from a periodic report, or its final message).

        A report this master cannot read (another loadkit version on the
        worker) is refused with one clear error per worker, and the worker
        is counted as lost: the run lacks its numbers, so it is not valid.
        """
        if cid not in self.unreadable:
            try:
                delta = Recorder.from_wire(payload["delta"])
            except WireError as exc:
                self.unreadable[cid] = str(exc)
                logger.error("loadkit: worker %s%s: %s; its numbers are left out and it counts as lost",
                             cid, self._whom(cid), exc)
        if cid in self.unreadable:
            self.running.discard(cid)
            self.rt.lost_workers.add(cid)
            return
        if cid in self.written_off:
            self._revive(cid)
        self.rt.absorb(delta)
        self.rt.worker_open[cid] = int(payload["open"])
        self.info[cid] = {k: payload.get(k) for k in ("pid", "hostname")}
        if final:
            if not self.ending and cid in self.running:
                self._left(cid, "left before the end of the run (quit in good order)")
            self.running.discard(cid)
        elif payload.get("in_run"):
            self.members.add(cid)
            self.running.add(cid)

    def write_off(self, cid: str, why: str) -> int:
        """The worker is gone without its final numbers: count its open sessions as lost."""
        if cid in self.written_off:
            return 0
        self.running.discard(cid)
        lost = self.rt.worker_open.get(cid, 0)
        self.rt.worker_open[cid] = 0
        self.written_off[cid] = lost
        self.rt.lost_workers.add(cid)
        self._left(cid, why)
        self._count_lost(lost)
        logger.warning("loadkit: lost worker %s%s: %s; %d session(s) it had open are counted as %s",
                       cid, self._whom(cid), why, lost, LOST_OUTCOME)
        return lost

    def check(self, clients: Any) -> None:
        """Write off every worker of the run that is missing or gone without its final numbers.

        A worker that stopped in good order sent its final message before
        Locust's "client_stopped" or "quit" (one connection, in order), so
        one that is absent from ``clients`` while still due is gone.
        """
        for cid in sorted(self.running):
            node = clients.get(cid)
            if node is None:
                self.write_off(cid, "it left without sending its final numbers")
            elif node.state == STATE_MISSING:
                self.write_off(cid, "it stopped sending heartbeats")

    def _left(self, cid: str, why: str) -> None:
        """The worker did not stay to the end: the run did not deliver its load (kept if it comes back)."""
        self.rt.left_workers.setdefault(cid, why)

    def _revive(self, cid: str) -> None:
        lost = self.written_off.pop(cid)
        self.rt.lost_workers.discard(cid)
        self._uncount_lost(lost)
        logger.warning("loadkit: worker %s%s reported again: its write-off is undone", cid, self._whom(cid))

    def _count_lost(self, n: int) -> None:
        if not n:
            return
        key = (LOST_OUTCOME, LOST_PHASE)
        for rec in (self.rt.total, self.rt.window):
            rec.ended[key] += n

    def _uncount_lost(self, n: int) -> None:
        """Undo a write-off: in the run's total, and in the window it landed in.

        The write-off counted in the window of its own time. When that
        window is still open it is taken back there; when it is closed (its
        row written), that row stays as it was and the sessions taken back
        are named in the current row as ``revived``: no row is rewritten and
        none gets a negative count.
        """
        if not n:
            return
        key = (LOST_OUTCOME, LOST_PHASE)
        total = self.rt.total
        total.ended[key] -= n
        if total.ended[key] <= 0:
            del total.ended[key]
        window = self.rt.window
        here = min(n, window.ended.get(key, 0))
        if here:
            window.ended[key] -= here
            if window.ended[key] == 0:
                del window.ended[key]
        self.revived += n - here

    def take_revived(self) -> int:
        """Sessions taken back from write-offs of earlier windows, since the last call (for a series row)."""
        n, self.revived = self.revived, 0
        return n

    def _whom(self, cid: str) -> str:
        info = self.info.get(cid)
        if not info or info.get("pid") is None:
            return ""
        return f" (pid {info['pid']} on {info['hostname']})"


def _install_master(environment: Any, rt: Any, runner: Any) -> None:
    import gevent

    events = environment.events
    ledger = rt.ledger = Ledger(rt)

    @events.test_start.add_listener
    def _new_run(**_kw: Any) -> None:
        ledger.new_run(cid for cid, node in runner.clients.items() if node.state != STATE_MISSING)

    @events.test_stopping.add_listener
    def _ending(**_kw: Any) -> None:
        ledger.ending = True

    @events.worker_report.add_listener
    def _merge(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        payload = data.get("loadkit")
        if payload:
            ledger.receive(client_id, payload)

    def _on_final(msg: Any, **_kw: Any) -> None:
        ledger.receive(msg.node_id, msg.data, final=True)

    runner.register_message(FINAL_MESSAGE, _on_final)

    def _watch() -> None:
        while True:
            gevent.sleep(WATCH_INTERVAL_S)
            if ledger.running:
                try:
                    ledger.check(runner.clients)
                except Exception:  # never let the watch die silently
                    logger.exception("loadkit: checking the workers failed")

    runner.greenlet.spawn(_watch)  # the runner's group: it ends with the runner

    # Every way a run ends on the master goes through runner.quit() (-t
    # expiry, the last worker quitting, an aborted run) or through the
    # plugin's quitting listener (Ctrl-C, SIGTERM), which calls
    # await_final_reports itself before writing the report.
    original_quit = runner.quit
    quitting: list[Any] = []

    def finish_and_quit() -> None:
        await_final_reports(environment, rt)
        _quit_stragglers(runner, ledger)
        original_quit()

    def quit_after_final_reports() -> None:
        # The wait runs in a greenlet of its own: Locust calls quit() from the
        # greenlet that reads the workers' messages (when the last worker
        # quits), and waiting there would hold back the very final reports
        # it waits for. Not in the runner's group: original_quit kills that.
        # Once the end has been awaited (the quitting listener did), quit at
        # once: Locust's shutdown exits right after this call.
        if ledger.settled:
            finish_and_quit()
        elif not quitting:
            quitting.append(gevent.spawn(finish_and_quit))

    runner.quit = quit_after_final_reports  # type: ignore[method-assign]


def _quit_stragglers(runner: Any, ledger: Ledger) -> None:
    """Tell "quit" to the run's workers that Locust will not tell.

    Locust's quit reaches the workers in its list only. A worker that was
    told "stop" leaves that list for ``--stop-timeout`` seconds (between its
    "client_stopped" and its next "client_ready"), so with a stop timeout it
    would miss the quit and linger until the master's heartbeats stop (60 s).
    It reads this quit when that pause is over.
    """
    from locust.rpc import Message

    for cid in sorted(ledger.members - set(ledger.written_off) - set(runner.clients)):
        try:
            runner.server.send_to_client(Message("quit", None, cid))
        except Exception as exc:  # the worker may be gone; the master quits all the same
            logger.debug("loadkit: could not send quit to worker %s: %s", cid, exc)


def await_final_reports(environment: Any, rt: Any) -> None:
    """Stop the users and wait (bounded) for each worker's final numbers; write off the rest."""
    ledger: Ledger | None = getattr(rt, "ledger", None)
    if ledger is None or ledger.settled:
        return
    import gevent

    runner = environment.runner
    ledger.ending = True
    runner.stop()  # waits until the workers report no users (or its own timeout)
    deadline = time.monotonic() + FINAL_WAIT_S
    while ledger.running and time.monotonic() < deadline:
        ledger.check(runner.clients)
        if ledger.running:
            gevent.sleep(0.05)
    for cid in sorted(ledger.running):
        ledger.write_off(cid, f"its final numbers did not come within {FINAL_WAIT_S:g} s")
    ledger.settled = True
    if rt.lost_workers:
        names = ", ".join(f"{cid}{ledger._whom(cid)}" for cid in sorted(rt.lost_workers))
        logger.warning("loadkit: %d worker(s) lost during the run: %s; see outcome %s in the summary",
                       len(rt.lost_workers), names, LOST_OUTCOME)
