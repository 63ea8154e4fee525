"""The webmessaging profile against the reference gateway's ``/v1``, over loopback.

Two kinds of test:

- the harness's own session driver (``GeventTransport`` + ``SessionDriver`` +
  ``Recorder``, as the Locust user wires them) runs whole guests, and the
  gateway's ground truth (``/_gateway/stats``, ``/_gateway/webmessaging``)
  must equal the harness's counts: equal, not close;
- the transport alone, frame by frame, for the rules a well-behaved guest
  never meets (a 4th socket on a token, a resumed session, limits).

Each test starts its own gateway process and stops it by PID at teardown.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import gevent
import orjson
import pytest

from loadkit.errors import ConnectionEnded, UpgradeRefused
from loadkit.gateway.process import GatewayProcess
from loadkit.lifecycle import Result
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.protocol.base import EventKind, TokenGrant
from loadkit.protocol.webmessaging import WebMessagingProfile
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import Behaviour, HarnessSettings, behaviour
from loadkit.transport import GeventTransport, WebSocket

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]  # each test starts a gateway process

E = EventKind
DEPLOYMENT = "loadkit-test-deployment"
#: Short timers; echo limit off unless a test is about it (the harness pings fast here).
FAST = {"agent_think_s": "0.01,0.03", "webmessaging.echo_limit_per_min": 0}
SETTINGS = HarnessSettings(
    session_seconds=(1.2, 1.5), keepalive_s=0.4, pong_timeout_s=2.0, message_interval=(0.6, 0.8),
    pause_between=(0.0, 0.0), connect_timeout_s=5.0, auth_timeout_s=3.0, close_timeout_s=2.0,
    just_after_auth_s=0.5, reconnect_base_s=0.05, reconnect_cap_s=0.1, reconnect_max_attempts=1,
    survival_marks=(1,),
)


@pytest.fixture
def start() -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def _start(**settings: Any) -> GatewayProcess:
        gw = GatewayProcess(settings={**FAST, **{k.replace("__", "."): v for k, v in settings.items()}}, seed=3)
        started.append(gw)
        gw.start()
        return gw

    try:
        yield _start
    finally:
        for gw in started:
            gw.stop()
    for gw in started:
        assert gw.returncode == 0
        assert "Traceback" not in gw.stderr_text()


@pytest.fixture
def wm() -> WebMessagingProfile:
    return get_profile("webmessaging", deployment_id=DEPLOYMENT)  # type: ignore[return-value]


# --- helpers -------------------------------------------------------------------------------


def drive(url: str, profile: Any, guests: list[Behaviour], settings: HarnessSettings = SETTINGS,
          ) -> tuple[Recorder, list[Result], list[tuple[str, Any]]]:
    """Run one guest per behaviour concurrently, as Locust users would; what the harness counted."""
    transport = GeventTransport(open_timeout=settings.connect_timeout_s, close_timeout=settings.close_timeout_s)
    recorder, live = Recorder(settings.survival_marks), LiveSessions()
    reports: list[tuple[str, Any]] = []
    results: list[Result] = []

    def guest(number: int, kind: Behaviour) -> None:
        driver = SessionDriver(transport, profile, recorder, settings, url, live,
                               lambda name, ms, err, length: reports.append((name, err)), random.Random(number))
        results.append(driver.run_guest(number, kind))

    jobs = [gevent.spawn(guest, i + 1, kind) for i, kind in enumerate(guests)]
    gevent.joinall(jobs, timeout=40, raise_error=True)
    transport.close()
    assert all(job.dead for job in jobs) and live.open == 0
    return recorder, results, reports


def settled(gw: GatewayProcess, timeout: float = 5.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both stats documents once every connection the gateway saw has ended."""
    deadline = time.monotonic() + timeout
    stats = gw.stats()
    while stats["sessions"]["open"] and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = gw.stats()
    status, wm = gw.request("GET", "/_gateway/webmessaging")
    assert status == 200
    return stats, wm


def assert_same_counts(rec: Recorder, stats: dict[str, Any]) -> None:
    """Sessions and closes as the harness counted them == as the gateway counted them."""
    assert stats["sessions"]["opened"] == rec.started
    assert stats["sessions"]["authenticated"] == rec.authenticated
    assert stats["sessions"]["closed"] == rec.ended_total
    harness: Counter[tuple[int, str, str]] = Counter()
    for (_phase, code, reason, initiator), n in rec.close_codes.items():
        harness[(code, reason, initiator)] += n
    gateway: Counter[tuple[int, str, str]] = Counter()
    for row in stats["closes"]:
        gateway[(row["code"], row["reason"], row["initiator"])] += row["count"]
    assert gateway == harness


def socket_for(gw: GatewayProcess, wm: WebMessagingProfile, grant: TokenGrant, origin: str | None = None) -> WebSocket:
    headers = [("Origin", origin)] if origin else wm.handshake_headers(gw.url)  # type: ignore[arg-type]
    return GeventTransport(close_timeout=2).connect(wm.websocket_url(gw.url, grant), headers, 5)


def next_event(ws: WebSocket, wm: WebMessagingProfile, timeout: float = 3.0) -> Any:
    data = ws.recv(timeout)
    assert data is not None, "no frame within the timeout"
    return wm.classify(data)


def configure(ws: WebSocket, wm: WebMessagingProfile, grant: TokenGrant) -> Any:
    ws.send(wm.auth_frame(grant))  # type: ignore[arg-type]
    ev = next_event(ws, wm)
    assert ev.kind is E.AUTH_OK, ev
    return ev


def closed(ws: WebSocket, timeout: float = 3.0) -> ConnectionEnded:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ws.recv(0.1)
        except ConnectionEnded as exc:
            return exc
    raise AssertionError("the socket stayed open")


# --- whole guests through the driver --------------------------------------------------------------


def test_guests_live_their_sessions_and_both_sides_count_the_same(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__deployments=DEPLOYMENT)
    rec, results, reports = drive(gw.url, wm, [behaviour("normal")] * 6)
    stats, wms = settled(gw)
    assert {r.outcome.value for r in results} == {"closed_normally"}
    assert_same_counts(rec, stats)
    assert dict(rec.bad_frames) == {} and rec.missed_pongs == 0
    for phase in ("connect", "auth", "message", "ping"):
        assert rec.latency[phase].count > 0, phase
    assert not [r for r in reports if r[1] is not None]
    assert wms["sessions"] == {"new": 6, "resumed": 0, "active": 0}
    # only a goodbye's Presence Clear hard on two messages can be refused (2 onMessage per second),
    # and the guest counted exactly the refusals that reached it
    assert set(rec.errors) <= {"4029"} and dict(rec.errors) == wms["errors_sent"]
    # every guest said goodbye as the SDKs do: its Presence Clear ended the conversation (a Clear
    # refused 429 within a second of two messages was sent again after its retryAfter), and its
    # closeSession was answered SessionResponse connected:false
    assert wms["frames_received"]["closeSession"] == 6 == wms["close_session_answered"]
    assert wms["sessions_cleared"] == 6 and wms["frames_sent"]["SessionClearedEvent"] == 6
    assert wms["frames_sent"]["SessionResponse"] == 6 + 6  # configureSession's, closeSession's
    assert wms["frames_received"]["echo"] == rec.latency["ping"].count + rec.missed_pongs


def test_an_echo_answered_during_the_goodbye_is_a_ping_round_trip_like_any_other(start: Any, wm: WebMessagingProfile) -> None:
    # The keepalive falls a millisecond before the planned end (less the time from auth_ok to the
    # established loop): a guest's last echo goes out, its goodbye begins, and the answer arrives
    # during the goodbye. Each is a round trip; none may be lost between the two. Whether an echo
    # makes it out before the end is timing, so the round repeats until a few have.
    gw = start(webmessaging__deployments=DEPLOYMENT)
    quiet = Behaviour(name="normal", messages=False)
    settings = dataclasses.replace(SETTINGS, session_seconds=(0.5, 0.5), keepalive_s=0.499)
    pings = missed = echoes = sent = in_flight = 0
    for _round in range(10):
        rec, results, _ = drive(gw.url, wm, [quiet] * 10, settings)
        _stats, wms = settled(gw)
        assert {r.outcome.value for r in results} == {"closed_normally"}
        pings, missed = pings + rec.latency["ping"].count, missed + rec.missed_pongs
        sent, in_flight = sent + rec.pings_sent, in_flight + rec.pings_in_flight
        echoes = wms["frames_received"].get("echo", 0)  # the gateway's count, over all rounds
        assert sent == echoes, (sent, echoes)  # every echo sent reached the gateway...
        assert pings == echoes and missed == in_flight == 0, (pings, echoes, missed, in_flight)  # ...and was timed
        if echoes >= 3:
            break
    assert echoes >= 3, "no round let an echo out before its goodbye"


def test_the_rate_limit_answers_429_with_retry_after_and_the_guest_honours_it(start: Any, wm: WebMessagingProfile) -> None:
    # one gateway per guest, both guests at once: each gateway's counts are its one guest's
    gw_fast, gw_hasty = start(agent_replies=False), start(agent_replies=False)
    fast = Behaviour(name="normal", message_interval=(0.05, 0.05), honour_retry_after=True)
    hasty = Behaviour(name="fast_messages", message_interval=(0.05, 0.05), honour_retry_after=False)
    settings = HarnessSettings(**{**SETTINGS.__dict__, "session_seconds": (2.2, 2.2)})
    runs = [gevent.spawn(drive, gw_fast.url, wm, [fast], settings), gevent.spawn(drive, gw_hasty.url, wm, [hasty], settings)]
    gevent.joinall(runs, timeout=50, raise_error=True)
    (rec_fast, _, _), (rec_hasty, _, _) = (run.get(block=False) for run in runs)
    (_stats, first), (_stats, second) = settled(gw_fast), settled(gw_hasty)
    honoured, ignored = rec_fast.errors["4029"], rec_hasty.errors["4029"]
    # the gateway sent exactly the refusals each guest saw, 429/4029 with a retryAfter (a refusal
    # of the goodbye's Presence Clear, decided after the guest's close frame, is never sent)
    assert first["errors_sent"] == {"4029": honoured} and second["errors_sent"] == {"4029": ignored}
    assert first["frames_sent"]["TooManyRequestsErrorMessage"] == honoured
    assert second["frames_sent"]["TooManyRequestsErrorMessage"] == ignored
    # honouring retryAfter (1 s here) leaves one refusal per second at most; ignoring it, most are refused
    assert 1 <= honoured <= 3 < 10 < ignored
    assert rec_fast.latency["message"].count >= 3  # 2 per second got through


def test_a_dropped_guest_reconnects_with_its_token_and_resumes_its_session(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(faults__drop_fraction=1.0, faults__drop_after_s="0.3,0.3", faults__drop_code=1011)
    rec, results, _ = drive(gw.url, wm, [behaviour("normal")] * 3)
    stats, wms = settled(gw)
    assert_same_counts(rec, stats)
    assert rec.reconnect_attempts == rec.reconnect_successes == 3
    # one new session per guest; every reconnect configured the same token again: newSession false
    assert wms["sessions"]["new"] == 3 and wms["sessions"]["resumed"] == 3
    assert stats["faults"]["drop"]["1011"] == 6
    assert {r.outcome.value for r in results} == {"dropped_by_server"}


def test_an_unknown_deployment_is_refused_and_the_guest_counts_an_auth_refusal(start: Any) -> None:
    gw = start(webmessaging__deployments="someone-else")
    rec, results, _ = drive(gw.url, get_profile("webmessaging", deployment_id=DEPLOYMENT), [behaviour("normal")] * 2)
    stats, wms = settled(gw)
    assert [r.outcome.value for r in results] == ["auth_refused"] * 2
    assert_same_counts(rec, stats)
    assert dict(rec.errors) == {"400": 2} and wms["deployment_not_found"] == 2
    assert [(c["code"], c["reason"], c["initiator"], c["phase"]) for c in stats["closes"]] == [
        (1008, "deployment not found", "server", "pre_auth")]


def test_an_origin_off_the_allow_list_is_refused_at_the_upgrade(start: Any) -> None:
    gw = start(webmessaging__origins="https://www.shop.example")
    other = get_profile("webmessaging", deployment_id=DEPLOYMENT, origin="https://evil.example")
    _rec, results, _ = drive(gw.url, other, [behaviour("normal")])
    assert [r.outcome.value for r in results] == ["upgrade_refused"]
    stats, wms = settled(gw)
    assert stats["upgrades"]["refused"]["403"] == 1 and wms["origin_refused"] == 1
    assert stats["sessions"]["opened"] == 0
    ok = get_profile("webmessaging", deployment_id=DEPLOYMENT, origin="https://www.shop.example")
    _rec, results, _ = drive(gw.url, ok, [behaviour("normal")])
    assert [r.outcome.value for r in results] == ["closed_normally"]


def test_an_expired_session_ends_as_session_expired(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__session_ttl_s=0.5)
    quiet = Behaviour(name="no_keepalive", keepalive=False, messages=False)
    once = HarnessSettings(**{**SETTINGS.__dict__, "reconnect": False, "reconnect_max_attempts": 0})
    rec, results, _ = drive(gw.url, wm, [quiet], once)
    stats, wms = settled(gw)
    assert [r.outcome.value for r in results] == ["session_expired"]
    assert wms["sessions_expired"] == 1 and wms["frames_sent"]["SessionExpiredEvent"] == 1
    assert_same_counts(rec, stats)


# --- frame by frame -----------------------------------------------------------------------------


def test_a_reconnect_with_the_same_token_says_new_session_false(start: Any, wm: WebMessagingProfile) -> None:
    gw = start()
    grant = wm.token_grant(None, b"", 1)
    first = socket_for(gw, wm, grant)
    assert configure(first, wm, grant).fields["newSession"] is True
    first.close(1000, "")
    again = socket_for(gw, wm, grant)
    resumed = configure(again, wm, grant)
    assert resumed.fields["newSession"] is False and resumed.fields["connected"] is True
    other = socket_for(gw, wm, wm.token_grant(None, b"", 2))
    assert configure(other, wm, wm.token_grant(None, b"", 2)).fields["newSession"] is True
    again.close(1000, "")
    other.close(1000, "")


def test_a_fourth_socket_on_one_token_evicts_the_oldest_with_connection_closed_event(start: Any, wm: WebMessagingProfile) -> None:
    gw = start()
    grant = wm.token_grant(None, b"", 1)
    sockets = [socket_for(gw, wm, grant) for _ in range(4)]
    news = [configure(ws, wm, grant).fields["newSession"] for ws in sockets]
    assert news == [True, False, False, False]
    ev = next_event(sockets[0], wm)
    assert (ev.kind, ev.detail) == (E.SESSION_ENDED, "ConnectionClosedEvent")
    end = closed(sockets[0])
    assert (end.code, end.reason, end.initiator) == (1000, "connection closed", "server")
    for ws in sockets[1:]:  # the other three are untouched
        ws.send(wm.ping_frame(1, grant)[0])
        assert next_event(ws, wm).kind is E.PONG
        ws.close(1000, "")
    stats, wms = settled(gw)
    assert wms["connection_closed_events"]["evicted"] == 1
    assert sorted((c["code"], c["initiator"], c["count"]) for c in stats["closes"]) == [
        (1000, "client", 3), (1000, "server", 1)]


def test_with_evict_newest_the_fourth_socket_itself_is_turned_away(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__evict="newest", webmessaging__connection_closed_code=4000)
    grant = wm.token_grant(None, b"", 1)
    sockets = [socket_for(gw, wm, grant) for _ in range(3)]
    for ws in sockets:
        configure(ws, wm, grant)
    fourth = socket_for(gw, wm, grant)
    fourth.send(wm.auth_frame(grant))  # type: ignore[arg-type]
    assert next_event(fourth, wm).kind is E.SESSION_ENDED
    assert closed(fourth).code == 4000
    for ws in sockets:
        ws.close(1000, "")
    stats, _ = settled(gw)
    assert stats["sessions"] == {"opened": 4, "authenticated": 3, "open": 0, "closed": 4}
    assert {(c["code"], c["phase"]) for c in stats["closes"]} == {(1000, "authenticated"), (4000, "pre_auth")}


def test_close_session_with_close_all_connections_closes_the_tokens_other_sockets(start: Any, wm: WebMessagingProfile) -> None:
    gw = start()
    grant = wm.token_grant(None, b"", 1)
    a, b = socket_for(gw, wm, grant), socket_for(gw, wm, grant)
    configure(a, wm, grant)
    configure(b, wm, grant)
    a.send(orjson.dumps({"action": "closeSession", "token": grant.token, "closeAllConnections": True}))
    assert next_event(b, wm).detail == "ConnectionClosedEvent"
    assert closed(b).initiator == "server"
    # the socket that asked is answered as the SDKs expect (SessionResponse connected:false) and
    # stays open: the client closes it
    answer = next_event(a, wm)
    assert answer.kind is E.SESSION_ENDED and answer.detail == "SessionResponse connected=false"
    assert a.recv(0.3) is None
    a.close(1000, "")
    _stats, wms = settled(gw)
    assert wms["connection_closed_events"]["close_session"] == 1 and wms["sessions"]["active"] == 0
    assert wms["close_session_answered"] == 1


def test_echo_is_limited_to_two_per_minute_per_connection(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__echo_limit_per_min=2)
    grant = wm.token_grant(None, b"", 1)
    ws = socket_for(gw, wm, grant)
    configure(ws, wm, grant)
    kinds = []
    for seq in range(3):
        frame, ref = wm.ping_frame(seq, grant)
        ws.send(frame)
        ev = next_event(ws, wm)
        kinds.append(ev.kind)
        assert ev.ref == ref
    assert kinds == [E.PONG, E.PONG, E.RATE_LIMITED] and 55 <= ev.retry_after <= 60
    ws.close(1000, "")
    assert settled(gw)[1]["echo_limited"] == 1


def test_a_text_over_the_limit_gets_4011_and_the_socket_stays_open(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__max_text_length=10)
    grant = wm.token_grant(None, b"", 1)
    ws = socket_for(gw, wm, grant)
    configure(ws, wm, grant)
    frame, ref = wm.message_frame(1, "x" * 11, grant)
    ws.send(frame)
    ev = next_event(ws, wm)
    assert (ev.kind, ev.code, ev.ref, ev.detail) == (E.ERROR, 4011, ref, "message too long")
    frame, ref = wm.message_frame(2, "x" * 10, grant)
    ws.send(frame)
    assert (next_event(ws, wm).kind, ) == (E.ACK, )
    ws.close(1000, "")


def test_an_idle_socket_is_closed_with_the_configured_code(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__idle_timeout_s=0.4, webmessaging__idle_close_code=4008)
    grant = wm.token_grant(None, b"", 1)
    ws = socket_for(gw, wm, grant)
    configure(ws, wm, grant)
    end = closed(ws)
    assert (end.code, end.reason, end.initiator) == (4008, "idle timeout", "server")


def test_a_socket_past_its_maximum_age_is_closed_even_when_busy(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__max_connection_age_s=0.6)
    grant = wm.token_grant(None, b"", 1)
    ws = socket_for(gw, wm, grant)
    configure(ws, wm, grant)
    deadline = time.monotonic() + 3
    with pytest.raises(ConnectionEnded) as info:
        while time.monotonic() < deadline:
            ws.send(wm.ping_frame(1, grant)[0])
            ws.recv(0.1)
    assert (info.value.code, info.value.reason) == (1001, "connection age limit")


def test_an_echo_without_token_is_answered_or_refused_by_setting(start: Any, wm: WebMessagingProfile) -> None:
    bare = orjson.dumps({"action": "echo", "tracingId": "echo-1", "message": {"type": "Text", "text": "ping"}})
    for setting, kind in (("answer", E.PONG), ("error", E.ERROR)):
        gw = start(webmessaging__echo_without_token=setting)
        ws = socket_for(gw, wm, wm.token_grant(None, b"", 1))
        ws.send(bare)
        assert next_event(ws, wm).kind is kind
        ws.close(1000, "")


def test_requests_before_configure_session_get_session_not_found(start: Any, wm: WebMessagingProfile) -> None:
    gw = start()
    grant = wm.token_grant(None, b"", 1)
    ws = socket_for(gw, wm, grant)
    frame, ref = wm.message_frame(1, "hello", grant)
    ws.send(frame)
    ev = next_event(ws, wm)
    assert (ev.kind, ev.code, ev.ref) == (E.ERROR, 4007, ref)
    ws.close(1000, "")


def test_an_origin_refusal_reaches_the_transport_as_http_403(start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__origins="https://a.example")
    with pytest.raises(UpgradeRefused) as info:
        socket_for(gw, wm, wm.token_grant(None, b"", 1), origin="https://b.example")
    assert info.value.status == 403


# --- strict about what the target sends (issue 11) ------------------------------------------------


def test_a_refused_configure_session_with_the_socket_left_open_is_auth_refused_at_once(
        start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__deployments="some-other-deployment", webmessaging__deployment_error_close_code=0)
    t0 = time.monotonic()
    rec, results, reports = drive(gw.url, wm, [behaviour("normal")] * 3)
    took = time.monotonic() - t0
    stats, _wms = settled(gw)
    assert [r.outcome.value for r in results] == ["auth_refused"] * 3
    assert took < SETTINGS.auth_timeout_s  # not the auth timeout: the 400 is the answer
    assert rec.errors == Counter({"400": 3})
    assert_same_counts(rec, stats)
    assert all("Deployment not found" in k for k in rec.failure_details if "auth_refused" in k)
    # Locust's table names no server text
    assert {str(err) for _n, err in reports if err is not None} == {
        "auth refused in band (error)", "auth_refused in during_auth: closed 1000 by client"}


def test_session_expired_with_the_socket_left_open_is_a_drop_and_the_guest_reconnects(
        start: Any, wm: WebMessagingProfile) -> None:
    gw = start(webmessaging__session_ttl_s=0.3, webmessaging__expired_close_code=0)
    quiet = Behaviour(name="quiet", keepalive=False, messages=False)
    settings = dataclasses.replace(SETTINGS, session_seconds=(3.0, 3.0), reconnect_max_attempts=1)
    rec, _results, _reports = drive(gw.url, wm, [quiet] * 2, settings)
    stats, wms = settled(gw)
    # each guest: expired once (a drop), reconnected on a new token, expired again
    assert rec.ended[("session_expired", "just_after_auth")] + rec.ended[("session_expired", "established")] == 4
    assert rec.reconnect_attempts == 2 and rec.reconnect_successes == 2
    assert wms["sessions"]["new"] == 4 and wms["sessions"]["resumed"] == 0
    assert_same_counts(rec, stats)
