"""loadkit metrics across Locust workers: deltas up, exact merge on the master.

Workers ship what they recorded since their last report (``Recorder.detach``)
in Locust's ``report_to_master`` and, once their users have stopped, one
final message; the master merges each into the run total, so percentiles
come from merged histograms only.

Why the final message: on ``-t`` or Ctrl-C Locust's master fires
``test_stop`` at once, tells the workers to quit and stops listening half a
second later, so the workers' last reports can arrive after the master has
written its summary. The master therefore ends the run itself: it stops
the users, waits for every worker's final message (bounded), and only then
lets Locust quit.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from loadkit.metrics.recorder import Recorder

logger = logging.getLogger("loadkit")

FINAL_MESSAGE = "loadkit_final"
FINAL_WAIT_S = 15.0


def install(environment: Any, rt: Any) -> None:
    runner = environment.runner
    events = environment.events
    rt.finals: dict[str, bool] = {}
    rt.lost_workers = set()
    if isinstance(runner, WorkerRunner):

        @events.report_to_master.add_listener
        def _ship(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
            data["loadkit"] = {"delta": rt.recorder.detach().to_wire(), "open": rt.live.open}

        @events.test_stop.add_listener
        def _final(**_kw: Any) -> None:
            payload = {"delta": rt.recorder.detach().to_wire(), "open": rt.live.open}
            runner.send_message(FINAL_MESSAGE, payload)

    elif isinstance(runner, MasterRunner):

        def _absorb(client_id: str, payload: dict[str, Any]) -> None:
            rt.absorb(Recorder.from_wire(payload["delta"]))
            rt.worker_open[client_id] = int(payload["open"])

        @events.worker_report.add_listener
        def _merge(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
            payload = data.get("loadkit")
            if payload:
                _absorb(client_id, payload)

        def _on_final(msg: Any, **_kw: Any) -> None:
            _absorb(msg.node_id, msg.data)
            rt.finals[msg.node_id] = True

        runner.register_message(FINAL_MESSAGE, _on_final)

        original_quit = runner.quit

        def quit_after_final_reports() -> None:
            await_final_reports(environment, rt)
            original_quit()

        runner.quit = quit_after_final_reports  # type: ignore[method-assign]


def await_final_reports(environment: Any, rt: Any) -> None:
    """Stop the users and wait (bounded) for each worker's final numbers."""
    if getattr(rt, "finals_collected", False):
        return
    runner = environment.runner
    expected = set(rt.worker_open) | {cid for cid, c in runner.clients.items() if c.state != "missing"}
    runner.stop()
    deadline = time.monotonic() + FINAL_WAIT_S
    while time.monotonic() < deadline:
        alive = {cid for cid, c in runner.clients.items() if c.state != "missing"}
        waiting = (expected & alive) - set(rt.finals)
        if not waiting:
            break
        gevent.sleep(0.05)
    for cid in expected - set(rt.finals):
        rt.lost_workers.add(cid)
    rt.finals_collected = True
