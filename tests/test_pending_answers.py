"""Bounded per-session state: pending answers expire and count as unanswered.

A guest that sends a message every 2-5 s to a target that never acks
them, over ten simulated hours on the scripted fake transport and clock
of ``test_session_driver``: the pending table stays at one expiry's worth
of messages, the memory the session holds does not grow with its length,
and every expired message is counted in ``messages.unanswered``.
"""

from __future__ import annotations

import tracemalloc

from loadkit.report.build import build_report
from loadkit.session import PENDING_ANSWER_S
from loadkit.settings import HarnessSettings
from tests.test_session_driver import FakeConnection, FakeTransport, run_guest


class Forgetful(FakeConnection):
    """The fake keeps every frame sent for other tests' asserts; here that would be its growth, not ours."""

    def send(self, data: bytes) -> None:
        super().send(data)
        self.sent.clear()


def soak(hours: float) -> tuple[int, int, int]:
    """(messages sent, unanswered, peak bytes traced during the session)."""
    settings = HarnessSettings(session_seconds=(hours * 3600, hours * 3600), keepalive_s=20.0,
                               pong_timeout_s=10.0, message_interval=(2.0, 5.0), reconnect=False)
    tracemalloc.start()
    try:
        run = run_guest(FakeTransport(Forgetful(acks=False)), settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rec = run.recorder
    assert run.live.open == 0
    return rec.messages_sent, rec.messages_unanswered, peak


def test_unacked_messages_expire_and_count_as_unanswered_and_memory_stays_flat() -> None:
    short_sent, short_unanswered, short_peak = soak(0.25)
    sent, unanswered, peak = soak(10)
    assert sent > 7000
    # every message but those still within the expiry at the end expired, counted
    in_flight = PENDING_ANSWER_S / 2.0 + 1
    assert sent - in_flight <= unanswered <= sent
    assert short_sent - in_flight <= short_unanswered <= short_sent
    # forty times the session, not forty times the memory (the tracer's own
    # bookkeeping and the recorder's histograms account for the rest)
    assert peak < short_peak * 2 + 64 * 1024, (peak, short_peak)


def test_unanswered_is_in_the_report() -> None:
    settings = HarnessSettings(session_seconds=(600.0, 600.0), message_interval=(2.0, 5.0), reconnect=False)
    run = run_guest(FakeTransport(FakeConnection(acks=False)), settings)
    report = build_report(run.recorder, open_sessions=0, run={})
    m = report["messages"]
    assert m["unanswered"] == run.recorder.messages_unanswered > 100
    assert m["answered"] == 0
