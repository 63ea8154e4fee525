"""The gateway's own record of session ages (``session_ages``), the ground truth of survival.

The harness's Kaplan-Meier estimate is checked end to end against one
computed from this record (tests/test_survival_e2e.py), so the record itself
is checked here: its buckets, which ends are drops, what the real gateway
writes for a session it dropped and for one the guest closed, and the exact
merge across processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from loadkit.gateway.process import GatewayProcess
from loadkit.gateway.stats import AGE_BITS, CloseRecord, GatewayStats, age_bucket_ms, merge_snapshots
from tests.harness import settled_stats

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]  # each test starts a gateway process


def test_an_age_is_exact_below_the_kept_bits_and_rounded_down_by_less_than_its_bound_above() -> None:
    exact = 1 << AGE_BITS
    assert [age_bucket_ms(ms / 1000) for ms in (0, 1, 37, exact - 1)] == [0, 1, 37, exact - 1]
    for ms in (exact, 1000, 1999, 2500, 59_999, 1_800_000, 86_400_000):
        bucket = age_bucket_ms(ms / 1000)
        assert bucket <= ms and (ms - bucket) / ms < 2.0 ** (1 - AGE_BITS), ms
    assert age_bucket_ms(-0.5) == 0
    buckets = [age_bucket_ms(ms / 1000) for ms in range(0, 200_000, 7)]
    assert buckets == sorted(buckets)  # rounding keeps the order of ages
    # bounded: a day of distinct ages fits in a few thousand keys
    assert len({age_bucket_ms(ms / 1000) for ms in range(0, 86_400_000, 97)}) < 5000


def test_the_gateways_close_and_a_lost_link_are_drops_the_guests_close_is_censored() -> None:
    stats = GatewayStats()
    for _ in range(6):
        stats.session_opened()
    stats.session_closed(CloseRecord(1011, "internal error", "server", "authenticated"), 1.2)
    stats.session_closed(CloseRecord(1006, "", "none", "authenticated"), 0.05)
    stats.session_closed(CloseRecord(1000, "", "client", "authenticated"), 1.2)
    stats.session_closed(CloseRecord(1001, "", "client", "authenticated"), 30.0)
    stats.session_closed(CloseRecord(4008, "auth timeout", "server", "pre_auth"), None)  # never authenticated
    stats.session_closed(CloseRecord(1000, "", "client", "pre_auth"), None)
    ages = stats.snapshot({})["session_ages"]
    assert ages == {"dropped_ms": {"50": 1, str(age_bucket_ms(1.2)): 1},
                    "censored_ms": {str(age_bucket_ms(1.2)): 1, str(age_bucket_ms(30.0)): 1}}
    assert sum(ages["dropped_ms"].values()) + sum(ages["censored_ms"].values()) == 4  # the authenticated ones


def test_the_record_of_several_processes_is_summed_bucket_by_bucket_in_age_order() -> None:
    one = {"sessions": {"authenticated": 2}, "session_ages": {"dropped_ms": {"900": 1}, "censored_ms": {"3000": 1}}}
    two = {"sessions": {"authenticated": 3},
           "session_ages": {"dropped_ms": {"40": 1, "900": 1}, "censored_ms": {"3000": 1}}}
    merged = merge_snapshots([one, two])
    assert merged["sessions"] == {"authenticated": 5}
    assert merged["session_ages"] == {"dropped_ms": {"40": 1, "900": 2}, "censored_ms": {"3000": 2}}
    assert list(merged["session_ages"]["dropped_ms"]) == ["40", "900"]


def _ws(gw: GatewayProcess) -> ClientConnection:
    return connect(gw.ws_url, compression=None, proxy=None, open_timeout=5, close_timeout=2, legacy=True)


def _login(gw: GatewayProcess, conn: ClientConnection) -> tuple[float, float]:
    """Authenticate; (the moment auth_ok arrived, the auth round trip), by the client's clock."""
    guest = gw.token()
    sent = time.monotonic()
    conn.send(json.dumps({"type": "auth", "guestId": guest["guestId"], "token": guest["token"]}))
    assert json.loads(conn.recv(timeout=5))["type"] == "auth_ok"
    now = time.monotonic()
    return now, now - sent


@pytest.fixture
def gateways() -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def _start(seed: int = 1, **settings: Any) -> GatewayProcess:
        gw = GatewayProcess(settings=settings, seed=seed)
        started.append(gw)
        gw.start()
        return gw

    try:
        yield _start
    finally:
        for gw in started:
            gw.stop()


def test_the_real_gateway_times_a_drop_and_a_guests_close_from_auth_ok(gateways: Any) -> None:
    """Each age is the client's own, give or take the one-way delays the client measured as its auth round trip."""
    gw = gateways(**{"faults.drop_fraction": 1.0, "faults.drop_after_s": "0.4,0.4", "faults.drop_code": 1011})
    dropped, closing = _ws(gw), _ws(gw)
    dropped_auth, rtt_a = _login(gw, dropped)
    closing_auth, rtt_b = _login(gw, closing)
    time.sleep(0.15)
    closing.close()
    closed_age = time.monotonic() - closing_auth
    with pytest.raises(ConnectionClosed) as ended:
        dropped.recv(timeout=5)
    dropped_age = time.monotonic() - dropped_auth
    assert ended.value.rcvd is not None and ended.value.rcvd.code == 1011
    ages = settled_stats(gw)["session_ages"]
    (drop_ms, drops), = ages["dropped_ms"].items()
    (close_ms, closes), = ages["censored_ms"].items()
    assert drops == 1 == closes
    # planned 0.4 s after auth_ok; no later than the client saw it plus the way auth_ok took
    assert 400 <= int(drop_ms) <= (dropped_age + rtt_a) * 1000 + 1
    # The guest closed 0.15 s after it had auth_ok; the gateway counts from just before it sent auth_ok
    # (so however late its coroutine resumed after the write) to the close frame's arrival: never less
    # than 0.15 s (its milliseconds rounded down), never more than the client saw plus the way auth took.
    assert 150 - 1 <= int(close_ms) <= (closed_age + rtt_b) * 1000 + 1


def test_a_gateway_of_two_processes_records_every_sessions_age_once(gateways: Any) -> None:
    gw = gateways(processes=2)
    conns = [_ws(gw) for _ in range(8)]
    for conn in conns:
        _login(gw, conn)
    time.sleep(0.1)
    for conn in conns:
        conn.close()
    stats = settled_stats(gw)
    ages = stats["session_ages"]
    assert ages["dropped_ms"] == {} and sum(ages["censored_ms"].values()) == 8 == stats["sessions"]["authenticated"]
    assert all(100 <= int(ms) < 5000 for ms in ages["censored_ms"])
    assert [int(ms) for ms in ages["censored_ms"]] == sorted(int(ms) for ms in ages["censored_ms"])
