"""The gateway's anomaly faults: settings, plan, the bytes on the wire, and the ping flood.

The counts end to end (a Locust run, per kind and phase) are in
test_anomalies_e2e.py. Here: what each kind writes, read back by websockets'
own client parser (so a frame is what a real client sees); that a session
gets at most one anomaly and no other fault decision moves; the stats merge;
and the ping flood against a real gateway, with the harness's own driver:
its auth latency must be the gateway's, not the time it took to answer the
pings read with auth_ok.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
from gevent import get_hub
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from loadkit.gateway import GatewayProcess, load_settings
from loadkit.gateway.anomalies import ANOMALY_KINDS, AnomalySettings, auth_ok_write
from loadkit.gateway.faults import FaultPlan, FaultSettings
from loadkit.gateway.settings import SettingsError
from loadkit.gateway.stats import merge_snapshots
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import Behaviour, HarnessSettings
from loadkit.transport import GeventTransport

pytestmark = [pytest.mark.timeout(30), pytest.mark.slow]  # each test starts a gateway process

AUTH_OK = b'{"type":"auth_ok","guestId":"g","sessionId":"s","idleTimeout":30}'


def client_reads(data: bytes) -> tuple[list[tuple[Opcode, bytes]], Exception | None]:
    """What a client's parser makes of ``data``: the frames, then the error that stopped it."""
    proto = ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN)
    proto.receive_data(data)
    frames = [(e.opcode, bytes(e.data)) for e in proto.events_received()]
    return frames, proto.parser_exc


# -- the bytes ------------------------------------------------------------------------


def test_every_kind_but_bare_auth_ok_comes_after_auth_ok_and_a_flood_before_it() -> None:
    frames, exc = client_reads(auth_ok_write(AUTH_OK, "unknown_type", 3))
    assert exc is None
    assert frames == [(Opcode.PING, b"")] * 3 + [(Opcode.TEXT, AUTH_OK), (Opcode.TEXT, b'{"type":"surprise"}')]
    frames, exc = client_reads(auth_ok_write(AUTH_OK, "bare_auth_ok", 0))
    assert frames == [(Opcode.TEXT, b'{"type":"auth_ok"}'), (Opcode.TEXT, AUTH_OK)] and exc is None
    assert client_reads(auth_ok_write(AUTH_OK, None, 0)) == ([(Opcode.TEXT, AUTH_OK)], None)


@pytest.mark.parametrize(("kind", "opcode", "check"), [
    ("binary_frame", Opcode.BINARY, lambda p: p.startswith(b"{")),
    ("unmatched_pong", Opcode.TEXT, lambda p: p == b'{"type":"pong","id":-1}'),
    ("unmatched_ack", Opcode.TEXT, lambda p: b'"ack"' in p and b'"ts"' in p),
    ("not_json", Opcode.TEXT, lambda p: not p.startswith((b"{", b"["))),
    ("not_object", Opcode.TEXT, lambda p: p.startswith(b"[")),
    ("too_deep", Opcode.TEXT, lambda p: p.startswith(b"[" * 1025)),
    ("invalid_utf8", Opcode.TEXT, lambda p: not _utf8(p)),
])
def test_each_readable_kind_is_one_frame_a_client_parses(kind: str, opcode: Opcode, check: Any) -> None:
    frames, exc = client_reads(auth_ok_write(AUTH_OK, kind, 0))
    assert exc is None and frames[0] == (Opcode.TEXT, AUTH_OK) and len(frames) == 2
    assert frames[1][0] is opcode and check(frames[1][1])


@pytest.mark.parametrize(("kind", "says"), [("reserved_bits", "reserved bits"), ("bad_opcode", "invalid opcode")])
def test_an_rfc_6455_violation_stops_the_parser_after_auth_ok(kind: str, says: str) -> None:
    frames, exc = client_reads(auth_ok_write(AUTH_OK, kind, 0))
    assert frames == [(Opcode.TEXT, AUTH_OK)]
    assert exc is not None and says in str(exc)


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


# -- settings and plan ------------------------------------------------------------------


def test_anomalies_are_set_like_any_fault_and_refused_in_one_line() -> None:
    s = load_settings(overrides=["faults.anomalies.not_json=0.25", "faults.anomalies.ping_flood_size=50"])
    assert s.faults.anomalies == AnomalySettings(not_json=0.25, ping_flood_size=50)
    assert s.public_dict()["faults"]["anomalies"]["not_json"] == 0.25
    for bad, says in [("faults.anomalies.not_json=1.5", "faults.anomalies.not_json must be a fraction"),
                      ("faults.anomalies.ping_flood_size=0", "ping_flood_size must be 1..30000"),
                      ("faults.anomalies.not_jsn=0.1", "did you mean 'faults.anomalies.not_json'")]:
        with pytest.raises(SettingsError, match=says):
            load_settings(overrides=[bad])
    with pytest.raises(SettingsError, match=r"at most one anomaly.*sum to at most 1"):
        load_settings(overrides=["faults.anomalies.not_json=0.6", "faults.anomalies.too_deep=0.6"])


def test_a_session_gets_at_most_one_anomaly_each_kind_in_its_share() -> None:
    share = 0.09
    plan = FaultPlan(FaultSettings(anomalies=AnomalySettings(**dict.fromkeys(ANOMALY_KINDS, share))), 3)
    n = 10_000
    got = Counter(plan.session(seq).anomaly for seq in range(n))
    for kind in ANOMALY_KINDS:
        assert abs(got[kind] - n * share) < 4 * (n * share * (1 - share)) ** 0.5, (kind, got)
    assert sum(got.values()) == n  # one value per session: a kind or None


def test_anomalies_and_floods_move_no_other_decision() -> None:
    base = FaultSettings(drop_fraction=0.3, silent_close_after_auth=0.2)
    more = FaultSettings(drop_fraction=0.3, silent_close_after_auth=0.2,
                         anomalies=AnomalySettings(not_json=0.5, invalid_utf8=0.5, ping_flood=0.5))
    floods = 0
    for seq in range(300):
        a, b = FaultPlan(base, 7).session(seq), FaultPlan(more, 7).session(seq)
        assert (a.drop_after_s, a.silent_close, a.auth_delay_s) == (b.drop_after_s, b.silent_close, b.auth_delay_s)
        assert a.anomaly is None and a.ping_flood == 0 and b.anomaly in ("not_json", "invalid_utf8")
        floods += b.ping_flood == 1000
    assert 100 < floods < 200


def test_minimums_and_maximums_merge_as_such_across_processes() -> None:
    def doc(n: int, low: float | None, high: float | None) -> dict[str, Any]:
        return {"faults": {"ping_flood": {"sessions": n, "auth_ms_min": low, "auth_ms_max": high}}}

    merged = merge_snapshots([doc(2, 0.5, 3.0), doc(0, None, None), doc(1, 0.2, 1.0)])
    assert merged["faults"]["ping_flood"] == {"sessions": 3, "auth_ms_min": 0.2, "auth_ms_max": 3.0}
    assert merge_snapshots([doc(0, None, None)] * 2)["faults"]["ping_flood"]["auth_ms_min"] is None


# -- the ping flood, against a real gateway -------------------------------------------------

SETTINGS = HarnessSettings(
    session_seconds=(0.3, 0.3), keepalive_s=5.0, pong_timeout_s=2.0, message_interval=(5.0, 5.0),
    pause_between=(0.0, 0.0), connect_timeout_s=3.0, auth_timeout_s=3.0, close_timeout_s=2.0,
    just_after_auth_s=5.0, reconnect_max_attempts=0, survival_marks=(1,),
)
FLOOD = 2000


def harness_sessions(url: str, count: int) -> list[tuple[str, float]]:
    """``count`` sessions, one after the other, by the harness's own driver and transport;
    each one's outcome and auth latency (ms). The driver runs in a thread with its own hub,
    so this process's event loop is never touched."""
    out: list[tuple[str, float]] = []

    def run() -> None:
        transport = GeventTransport(open_timeout=3, close_timeout=SETTINGS.close_timeout_s)
        try:
            for n in range(count):
                rec = Recorder(SETTINGS.survival_marks)
                driver = SessionDriver(transport, get_profile("guest"), rec, SETTINGS, url, LiveSessions(),
                                       rng=random.Random(n))
                result, _grant, _end = driver.run_session(n, Behaviour(keepalive=False, messages=False), None,
                                                          0.3, None)
                out.append((result.outcome.value, rec.latency["auth"].max / 1000))
        finally:
            transport.close()
            get_hub().destroy(destroy_loop=True)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(20)
    assert len(out) == count, out
    return out


def test_a_ping_flood_with_auth_ok_is_answered_and_does_not_count_as_auth_latency() -> None:
    """Every auth_ok comes after 2,000 pings in the same write. Answering them is the harness's
    work: the auth latency it reports stays the gateway's own auth delay, plus the wire. The
    gateway's first pong back says how long the client took at least to read the flood; a
    harness that timed auth_ok after answering the pings would be later than half of that."""
    with GatewayProcess(settings={"faults.anomalies.ping_flood": 1.0,
                                  "faults.anomalies.ping_flood_size": FLOOD}, seed=1) as gw:
        sessions = harness_sessions(gw.url, 3)
        flood = gw.stats()["faults"]["ping_flood"]
    assert [outcome for outcome, _ in sessions] == ["closed_normally"] * 3
    assert flood["sessions"] == 3 and flood["pings"] == 3 * FLOOD == flood["pongs"]
    auth_min = min(ms for _, ms in sessions)
    assert flood["auth_ms_min"] <= auth_min  # nobody reads auth_ok before it was written
    assert auth_min - flood["auth_ms_min"] < flood["first_pong_ms_min"] / 2, (sessions, flood)
