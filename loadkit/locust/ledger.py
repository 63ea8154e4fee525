"""The master's book of the workers in a run: exact merge, write-offs, revivals. Pure.

See ``loadkit.locust.distributed`` for the theory of operation (deltas up,
final numbers, workers that leave or die). This module holds the
bookkeeping only: no Locust, no gevent, no sockets, so it is tested in a
plain process with payloads that crossed msgpack the way Locust sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from loadkit.metrics.recorder import Recorder
from loadkit.metrics.wire import WireError

__all__ = ["LOST_OUTCOME", "LOST_PHASE", "STATE_MISSING", "Ledger"]

logger = logging.getLogger("loadkit")

#: The outcome (and phase) of sessions that were open on a worker when it died.
LOST_OUTCOME = "lost_with_worker"
LOST_PHASE = "unknown"
#: Locust's name for a worker whose heartbeats stopped (``locust.runners.STATE_MISSING``).
STATE_MISSING = "missing"


class Ledger:
    """The master's book of the workers in the current run.

    ``rt`` is the run's figures (``loadkit.locust.aggregation.Figures``;
    anything with ``absorb_wire``, ``window`` (the open series window),
    ``closed`` (the closed ones: the run's total is both), ``worker_open``,
    ``lost_workers`` and ``left_workers`` will do): the ledger adds deltas
    with ``absorb_wire``, keeps ``worker_open`` (the gauges), ``lost_workers``
    and ``left_workers`` (the names in the report) up to date.
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
        #: the greenlet that delivers the workers' messages (the master notes it on each one):
        #: the wait for final numbers must never sleep in it
        self.delivery: Any = None

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
                report = Recorder.read_wire(payload["delta"])
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
        self.rt.absorb_wire(report)
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
        lost = int(self.rt.worker_open.get(cid, 0))
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
        self.rt.window.ended[(LOST_OUTCOME, LOST_PHASE)] += n  # the run's total is its windows

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
        window, closed = self.rt.window, self.rt.closed
        here = min(n, window.ended.get(key, 0))
        for rec, k in ((window, here), (closed, n - here)):  # the run's total: closed + window
            if k:
                rec.ended[key] -= k
                if rec.ended[key] <= 0:
                    del rec.ended[key]
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

    def names(self, cids: Iterable[str]) -> str:
        """Workers as the log names them: ``id (pid N on host)``, comma-separated."""
        return ", ".join(f"{cid}{self._whom(cid)}" for cid in sorted(cids))
