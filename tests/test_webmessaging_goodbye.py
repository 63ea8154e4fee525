"""The web messaging goodbye, as Genesys's SDKs speak it, against the reference gateway.

The guest sends Presence Clear and waits for ``SessionClearedEvent``, then
closeSession and waits for ``SessionResponse connected:false``, all within the
profile's ``goodbye_timeout``; a Clear refused 429 is sent again after its
``retryAfter``. The gateway's goodbye faults make it not answer, answer late,
or refuse the Clear: each path ends with the outcome it must have, and every
count the harness keeps equals the gateway's own (``/_gateway/stats``,
``/_gateway/webmessaging``). The driver's side of each path, frame by frame,
is in tests/test_session_driver.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from loadkit.protocol import get_profile
from loadkit.settings import HarnessSettings, behaviour
from tests.test_webmessaging_gateway import DEPLOYMENT, SETTINGS, assert_same_counts, drive, settled, start

__all__ = ["start"]  # the fixture, re-used

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]  # each test starts a gateway process

GUESTS = 3
#: No messages to race the goodbye's Clear (the rate limit is not what these tests are about),
#: and a short session before it: the goodbye is what is timed. A goodbye starts at least the
#: session's 0.3 s after auth, past just_after_auth, so every end is in ``established``.
QUIET = HarnessSettings(**{**SETTINGS.__dict__, "message_interval": (30.0, 30.0), "session_seconds": (0.3, 0.4),
                           "just_after_auth_s": 0.2})


def profile(timeout_s: float) -> Any:
    return get_profile("webmessaging", deployment_id=DEPLOYMENT, goodbye_timeout=timeout_s)


def outcomes(rec: Any) -> Counter[tuple[str, str]]:
    return Counter({key: n for key, n in rec.ended.items() if n})


def failures(reports: list[tuple[str, Any]]) -> list[str]:
    return [str(err) for name, err in reports if err is not None]


def test_a_healthy_gateway_confirms_every_goodbye(start: Any) -> None:
    gw = start()
    rec, results, reports = drive(gw.url, profile(4.0), [behaviour("normal")] * GUESTS, QUIET)
    stats, wms = settled(gw)
    assert [r.outcome.value for r in results] == ["closed_normally"] * GUESTS and not failures(reports)
    assert_same_counts(rec, stats)
    assert wms["sessions_cleared"] == GUESTS == wms["frames_sent"]["SessionClearedEvent"]
    assert wms["frames_received"]["closeSession"] == GUESTS == wms["close_session_answered"]
    assert wms["goodbye_faults"] == {"unanswered": 0, "delayed": 0, "refused": 0}
    assert dict(rec.errors) == {} == wms["errors_sent"]


def test_an_unanswered_goodbye_is_goodbye_incomplete_not_closed_normally(start: Any) -> None:
    gw = start(faults__goodbye_unanswered=1.0)
    rec, results, reports = drive(gw.url, profile(0.8), [behaviour("normal")] * GUESTS, QUIET)
    stats, wms = settled(gw)
    assert [r.outcome.value for r in results] == ["goodbye_incomplete"] * GUESTS
    assert outcomes(rec) == {("goodbye_incomplete", "established"): GUESTS}
    assert_same_counts(rec, stats)
    # each guest's Clear reached the gateway and was ignored; the guest waited, never sent
    # closeSession on a conversation it could not know was over, and closed 1000 itself
    assert wms["goodbye_faults"]["unanswered"] == GUESTS and wms["sessions_cleared"] == 0
    assert wms["frames_received"]["closeSession"] == 0
    assert [(c["code"], c["initiator"], c["count"]) for c in stats["closes"]] == [(1000, "client", GUESTS)]
    assert len([f for f in failures(reports) if f.startswith("goodbye_incomplete in established")]) == GUESTS
    assert any("no SessionClearedEvent within 0.8 s" in d for d in rec.failure_details)


@pytest.mark.parametrize("delay_ms, timeout_s, outcome, delayed, close_sessions", [
    (300, 4.0, "closed_normally", 2 * GUESTS, GUESTS),   # late, but within the goodbye timeout
    (1500, 0.8, "goodbye_incomplete", GUESTS, 0),        # later than the goodbye waits
])
def test_a_late_goodbye_answer_counts_only_within_the_goodbye_timeout(
        start: Any, delay_ms: int, timeout_s: float, outcome: str, delayed: int, close_sessions: int) -> None:
    gw = start(faults__goodbye_delay=f"fixed:{delay_ms}")
    rec, results, _ = drive(gw.url, profile(timeout_s), [behaviour("normal")] * GUESTS, QUIET)
    stats, wms = settled(gw)
    assert [r.outcome.value for r in results] == [outcome] * GUESTS
    assert_same_counts(rec, stats)
    assert wms["sessions_cleared"] == GUESTS  # the gateway ended each conversation either way
    assert wms["goodbye_faults"]["delayed"] == delayed
    assert wms["frames_received"]["closeSession"] == close_sessions == wms["close_session_answered"]


@pytest.mark.parametrize("refusals, timeout_s, outcome", [
    (1, 4.0, "closed_normally"),      # refused once; sent again after retryAfter (1 s) and confirmed
    # refused at 0 s and at 1 s (+ round trips); the next try, 1 s after the second refusal came,
    # is past the timeout (1.9 s leaves the first round trip up to 0.9 s on a busy machine)
    (2, 1.9, "goodbye_incomplete"),
])
def test_a_refused_clear_is_retried_after_retry_after_within_the_goodbye_timeout(
        start: Any, refusals: int, timeout_s: float, outcome: str) -> None:
    gw = start(faults__goodbye_refused=1.0, faults__goodbye_refusals=refusals, faults__goodbye_retry_after_s=1)
    rec, results, _ = drive(gw.url, profile(timeout_s), [behaviour("normal")] * GUESTS, QUIET)
    stats, wms = settled(gw)
    assert [r.outcome.value for r in results] == [outcome] * GUESTS
    assert_same_counts(rec, stats)
    # exactly the planned refusals went out, one per retryAfter (a guest that did not wait
    # would have used up both at once and completed), and the guest counted each as the target's
    assert wms["goodbye_faults"]["refused"] == refusals * GUESTS
    assert wms["errors_sent"] == {"4029": refusals * GUESTS} == dict(rec.errors)
    assert wms["sessions_cleared"] == (GUESTS if outcome == "closed_normally" else 0)
    assert wms["close_session_answered"] == (GUESTS if outcome == "closed_normally" else 0)
