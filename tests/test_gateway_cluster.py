"""A gateway of several processes on one port (``processes`` > 1) answers as one gateway.

Each test starts a real 2-process gateway (SO_REUSEPORT) and checks what
must be the gateway's, not a process's: the merged ground truth equals what
the harness counted, session numbers (and so the fault plan) are dealt
gateway-wide, the connection cap and the token window are the whole
gateway's, a token from one process authenticates at another, a restart
reaches every process and counts once, and every process stops with the
gateway (SIGTERM, stdin EOF, kill) or when any one of them dies.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from loadkit.gateway.faults import FaultPlan
from loadkit.gateway.process import GatewayProcess
from loadkit.gateway.settings import load_settings
from tests.harness import assert_matches_gateway, codes_by, run_locust, settled_stats

FAST = ("--session-seconds", "1.5-2.5", "--keepalive-interval", "0.5", "--message-interval", "0.2-0.4",
        "--guest-pause", "0-0.1")
NO_RECONNECT = ("--reconnect-max-attempts", "0")

pytestmark = pytest.mark.slow  # its tests start gateway processes (the two pure ones take milliseconds)


@pytest.fixture
def start() -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def run(**settings: Any) -> GatewayProcess:
        seed = settings.pop("seed", 7)
        gw = GatewayProcess(settings={"processes": 2, **settings}, seed=seed)
        started.append(gw)
        gw.start()
        return gw

    yield run
    for gw in started:
        gw.stop()


def ws(gw: GatewayProcess) -> ClientConnection:
    return connect(gw.ws_url, compression=None, proxy=None, open_timeout=5, close_timeout=2, legacy=True)


def login(gw: GatewayProcess, conn: ClientConnection) -> None:
    guest = gw.token()
    conn.send(json.dumps({"type": "auth", "guestId": guest["guestId"], "token": guest["token"]}))
    assert json.loads(conn.recv(timeout=5))["type"] == "auth_ok"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


def test_both_processes_serve_and_the_record_is_their_exact_sum(start: Any) -> None:
    gw = start()
    conns = [ws(gw) for _ in range(24)]
    for conn in conns:
        login(gw, conn)  # each token is issued by whichever process the request reached
    for conn in conns:
        conn.close()
    stats = settled_stats(gw)
    per_process = stats["processes"]
    assert len(per_process) == 2 and len({p["pid"] for p in per_process}) == 2
    assert all(p["opened"] > 0 for p in per_process), per_process  # 24 connections, all to one: p = 2^-23
    assert sum(p["opened"] for p in per_process) == stats["sessions"]["opened"] == 24
    assert sum(p["tokens_issued"] for p in per_process) == stats["tokens"]["issued"] == 24
    assert stats["sessions"] == {"opened": 24, "authenticated": 24, "open": 0, "closed": 24}
    assert stats["closes"] == [{"code": 1000, "reason": "", "initiator": "client", "phase": "authenticated",
                                "count": 24}]
    assert stats["settings"]["processes"] == 2 and "secret" not in stats["settings"]


def test_session_numbers_are_dealt_gateway_wide_so_the_fault_plan_is_the_same(start: Any) -> None:
    gw = start(**{"faults.refuse_upgrades_fraction": 0.5}, seed=21)
    refused = 0
    for _ in range(40):
        try:
            ws(gw).close()
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            refused += 1
    plan = FaultPlan(load_settings(None, ["faults.refuse_upgrades_fraction=0.5"], seed=21).faults, 21)
    expected = sum(plan.session(seq).refuse_status is not None for seq in range(40))
    assert refused == expected == gw.stats()["faults"]["upgrade_refused"]["503"]


def test_the_connection_cap_and_the_token_window_are_the_whole_gateways(start: Any) -> None:
    gw = start(max_connections=3, token_rate_limit_per_s=4)
    statuses = [gw.request("POST", "/api/v2/guests")[0] for _ in range(8)]
    assert sorted(statuses) == [201] * 4 + [429] * 4
    opened, refused = [], 0
    for _ in range(8):
        try:
            opened.append(ws(gw))
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            refused += 1
    assert (len(opened), refused) == (3, 5)
    for conn in opened:
        conn.close()
    stats = settled_stats(gw)
    assert stats["upgrades"] == {"accepted": 3, "refused": {"503": 5, "429": 0}}
    assert stats["tokens"]["refused"]["429"] == 4


def test_a_restart_reaches_every_process_and_counts_once(start: Any) -> None:
    gw = start()
    conns = [ws(gw) for _ in range(10)]
    for conn in conns:
        login(gw, conn)
    assert gw.restart(pause_s=0.5)["restarting"] == 10
    for conn in conns:
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=5)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1012, "service restart")
    stats = settled_stats(gw)
    assert stats["faults"]["restarts"] == 1
    assert codes_by(stats["closes"], "code", "initiator") == {(1012, "server"): 10}


@pytest.mark.parametrize("how", ["sigterm", "stdin_eof"])
def test_every_process_stops_with_the_gateway_and_sessions_get_going_away(start: Any, how: str) -> None:
    gw = start()
    conns = [ws(gw) for _ in range(6)]
    for conn in conns:
        login(gw, conn)
    workers = [p["pid"] for p in gw.stats()["processes"]]
    if how == "sigterm":
        os.kill(gw.pid, signal.SIGTERM)  # type: ignore[arg-type]
    else:
        gw.close_stdin()
    for conn in conns:
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=10)
        assert closed.value.rcvd.code == 1001
    assert gw.proc is not None and gw.proc.wait(15) == 0
    wait_gone(workers)


def test_a_worker_that_dies_stops_the_whole_gateway(start: Any) -> None:
    gw = start()
    workers = [p["pid"] for p in gw.stats()["processes"]]
    os.kill(workers[0], signal.SIGKILL)
    assert gw.proc is not None and gw.proc.wait(15) == 1
    wait_gone(workers)


def test_kill_takes_every_process_down_at_once(start: Any) -> None:
    gw = start()
    conn = ws(gw)
    login(gw, conn)
    workers = [p["pid"] for p in gw.stats()["processes"]]
    gw.kill()
    with pytest.raises(ConnectionClosed) as closed:
        conn.recv(timeout=5)
    assert closed.value.rcvd is None  # no close frame: the client sees 1006
    wait_gone(workers, timeout=5)


@pytest.mark.slow
def test_a_harness_run_against_two_processes_matches_the_merged_record(tmp_path: Any, start: Any) -> None:
    gw = start(**{"faults.drop_fraction": 0.6, "faults.drop_after_s": "0.1,0.8", "faults.drop_code": 1011,
                  "faults.silent_close_after_auth": 0.1}, seed=3)
    # 16 users: the kernel spreads connections over the two processes (SO_REUSEPORT, a hash of
    # each connection's ports), so n sessions all land on one process with p = 2^(1-n): 1/128 for
    # the 8 a busy machine's slow run could hold with 8 users, 3e-5 for the 16 first sessions here.
    run = run_locust(tmp_path, "--host", gw.url, *FAST, *NO_RECONNECT, users=16, rate=16, run_time="4s")
    stats = settled_stats(gw)
    assert run.report is not None
    assert_matches_gateway(run.report, stats)
    assert stats["sessions"]["open"] == 0 and stats["sessions"]["opened"] == stats["sessions"]["closed"]
    assert all(p["opened"] > 0 for p in stats["processes"]), stats["processes"]
    server = codes_by(stats["closes"], "code", "initiator")
    assert server.get((1011, "server"), 0) > 0 and server.get((1000, "server"), 0) > 0


@pytest.mark.parametrize("argv, message", [
    (["--processes", "-1"], "argument --processes: must be >= 0 (0 = one per available core), got -1 (see --help)"),
    (["--processes", "two"], "argument --processes: must be a whole number, got 'two' (see --help)"),
    (["--set", "processes=-2"], "processes must be >= 0, 0 meaning one per available core (got -2)"),
])
def test_a_bad_process_count_is_one_line_and_exit_2(capsys: Any, argv: list[str], message: str) -> None:
    from loadkit.gateway.__main__ import main

    assert main(argv) == 2
    assert capsys.readouterr().err == f"loadkit gateway: error: {message}\n"


@pytest.mark.parametrize("protocol, cores, expected", [
    ("guest", 1, 1), ("guest", 2, 1), ("guest", 3, 1), ("guest", 8, 4), ("guest", 64, 32),
    ("webmessaging", 8, 1), ("custom", 8, 1),
])
def test_the_embedded_gateway_takes_half_the_cores_for_the_guest_protocol(protocol: str, cores: int,
                                                                         expected: int) -> None:
    from loadkit.locust.embedded import default_processes

    assert default_processes(protocol, cores) == expected
