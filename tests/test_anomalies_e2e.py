"""Every anomalous frame the gateway injects, counted by the harness: equal, by kind and phase.

One Locust run against a gateway that writes one anomaly (at most) into
most sessions, each kind in its own share (``faults.anomalies``). Each guest
runs one session and then pauses past the end of the run; all of them
start at once and the stop waits for sessions still running
(``--stop-timeout``), however slow the machine, so no stop cuts a session
short and every count can be exact: what the harness classified, per kind
and per phase, equals what the gateway says it wrote, and each fatal kind
ends exactly its sessions with its close code, as the gateway received it. (The ping flood, a timing check, is in test_gateway_anomalies.py:
thirty floods at once would measure the machine, not the harness.)
"""

from __future__ import annotations

from collections import Counter
from itertools import count
from typing import Any

import pytest

from loadkit.gateway.anomalies import ANOMALY_KINDS, AnomalySettings
from loadkit.gateway.faults import FaultPlan, FaultSettings
from tests.harness import assert_matches_gateway, codes_by, run_locust, settled_stats

pytestmark = pytest.mark.slow

GUESTS = 30
SHARE = 0.08  # of sessions, per kind: 11 kinds, 88 % of the sessions get one

#: what the harness calls each injected kind (loadkit/protocol/base.py BAD_FRAME_KINDS)
HARNESS_KIND = {"binary_frame": "binary_frame", "unmatched_pong": "unmatched_answer",
                "unmatched_ack": "unmatched_answer", "bare_auth_ok": "missing_fields", "not_json": "not_json",
                "not_object": "not_object", "unknown_type": "unknown_type", "too_deep": "too_deep",
                "invalid_utf8": "invalid_utf8", "reserved_bits": "bad_framing", "bad_opcode": "bad_framing"}
#: the close each fatal kind ends its session with, from the harness, as the gateway receives it
FATAL_CLOSE = {"binary_frame": (1003, "bad frame: binary_frame"), "not_json": (1007, "bad frame: not_json"),
               "not_object": (1007, "bad frame: not_object"), "too_deep": (1007, "bad frame: too_deep"),
               "invalid_utf8": (1007, "invalid UTF-8"), "reserved_bits": (1002, "reserved bits must be 0"),
               "bad_opcode": (1002, "invalid opcode")}


def planned(seed: int) -> Counter[str | None]:
    """The anomalies the fault plan gives sessions 0..GUESTS-1 (the gateway numbers upgrades from 0)."""
    anomalies = AnomalySettings(**dict.fromkeys(ANOMALY_KINDS, SHARE))
    plan = FaultPlan(FaultSettings(anomalies=anomalies), seed)
    return Counter(plan.session(seq).anomaly for seq in range(GUESTS))


#: the first seed whose plan gives every kind to at least one of the sessions
SEED = next(seed for seed in count(1) if all(planned(seed)[kind] for kind in ANOMALY_KINDS))


def test_every_injected_anomaly_is_counted_by_kind_and_phase(
        tmp_path: Any, gateway_factory: Any) -> None:
    expected = planned(SEED)
    settings = {f"faults.anomalies.{kind}": SHARE for kind in ANOMALY_KINDS}
    gw = gateway_factory(**settings, seed=SEED)
    run = run_locust(tmp_path, "--host", gw.url, "--session-seconds", "0.6-0.9", "--keepalive-interval", "0.3",
                     "--message-interval", "0.2-0.3", "--guest-pause", "60-60", "--reconnect-max-attempts", "0",
                     "--stop-timeout", "10", users=GUESTS, rate=GUESTS, run_time="3s")
    stats = settled_stats(gw)
    report = run.report
    assert report is not None, run.stderr[-2000:]
    assert_matches_gateway(report, stats)  # the invariant, authenticated, every close code both sides saw
    sessions = report["sessions"]
    # Every guest ran its one session to its end: nothing was cut by the run's stop.
    assert sessions["started"] == GUESTS == stats["sessions"]["authenticated"] == stats["upgrades"]["accepted"]
    assert sessions["outcomes"].get("stopped_by_harness", 0) == 0, sessions

    injected = stats["faults"]["anomalies"]
    assert injected == {kind: expected[kind] for kind in ANOMALY_KINDS}  # the gateway did what its plan says
    wanted: Counter[str] = Counter()
    for kind, n in injected.items():
        wanted[HARNESS_KIND[kind]] += n
    bad = report["bad_frames"]
    assert bad["by_kind"] == dict(+wanted)
    assert bad["count"] == sum(injected.values()) and bad["sessions"] == sum(injected.values())
    # bare_auth_ok comes before the real auth_ok, every other kind just after it.
    assert bad["by_phase"] == {"during_auth": injected["bare_auth_ok"],
                               "just_after_auth": sum(injected.values()) - injected["bare_auth_ok"]}

    # Each fatal kind ended exactly its sessions, with its close, which the gateway received from the client.
    gateway_closes = codes_by(stats["closes"], "code", "reason", "initiator", "phase")
    for kind, (code, reason) in FATAL_CLOSE.items():
        assert gateway_closes[(code, reason, "client", "authenticated")] == injected[kind], kind
    assert sessions["outcomes"].get("protocol_error", 0) == sum(injected[k] for k in FATAL_CLOSE)
    assert sessions["outcomes"].get("closed_normally", 0) == GUESTS - sum(injected[k] for k in FATAL_CLOSE)

