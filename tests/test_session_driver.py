"""The session driver over a scripted transport: every outcome, every phase.

``SessionDriver`` only knows its transport through ``loadkit.connection``'s
``Transport``/``Connection`` protocols, so a whole session can run here
against a fake: a clock that jumps instead of waiting, a token endpoint that
answers what the test says, and a connection that plays a script of frames
and ends (a close, a lost link, a stop) at set times. No sockets, no gevent:
each test takes milliseconds and says exactly what the target did.

The end-to-end tests (test_integration.py, test_faults_e2e.py) check the same
outcomes against the real gateway over loopback; these pin down the driver's
own decisions (which outcome, which phase, which counters) one by one, and
every one checks the accounting: started = ended by a named outcome + open.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from loadkit.connection import ConnectAttempt, Connection, Transport
from loadkit.errors import (
    ConnectFailed,
    ConnectionEnded,
    ConnectRefused,
    TargetProtocolError,
    UpgradeRefused,
)
from loadkit.lifecycle import Outcome, Phase, Result
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.protocol.base import BinaryFrame, EventKind, ServerEvent, TokenRequest
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import HarnessSettings, behaviour

#: Round trip of every answer the fake gateway sends (auth_ok, pong, ack).
RTT = 0.05
#: Time the fake TCP connect + upgrade takes.
CONNECT_S = 0.01
#: Session length of every test (the guest's plan): long enough to pass
#: ``just_after_auth`` (5 s) and a keepalive or two.
LENGTH = 60.0

SETTINGS = HarnessSettings(session_seconds=(LENGTH, LENGTH), keepalive_s=20.0, pong_timeout_s=10.0,
                           message_interval=(7.0, 7.0), auth_timeout_s=15.0, just_after_auth_s=5.0,
                           reconnect=False)


# -- the fake transport ------------------------------------------------------------


class Clock:
    """The fake's time: it moves only when the driver waits or sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0


class Answer(NamedTuple):
    status: int
    body: bytes
    wire_s: float = 0.02
    waited_s: float = 0.0


def grant_body(guest: str = "g1") -> bytes:
    return orjson.dumps({"guestId": guest, "token": "tok-" + guest, "expiresAt": int(time.time()) + 3600})


class Stop(BaseException):
    """Stands for gevent's GreenletExit: the harness is stopping this guest."""


#: What a connection can play: a frame (bytes), how it ends (ConnectionEnded),
#: or any other exception raised from ``recv`` once (Stop, a bug).
Item = bytes | BaseException


class FakeConnection:
    """A gateway's side of one WebSocket, played from a script on the fake clock.

    It answers as a healthy guest gateway does (auth → auth_ok, ping → pong,
    message → ack, each after ``RTT``) unless told otherwise, and plays
    ``after_auth`` items at the given delays after its auth_ok.
    """

    def __init__(self, auth: bytes | None = b"ok", after_auth: list[tuple[float, Item]] | None = None,
                 during_auth: list[tuple[float, Item]] | None = None, pongs: bool = True,
                 acks: bool = True, close_answer: ConnectionEnded | None = None) -> None:
        self.clock = Clock()  # replaced by the transport's on connect
        self.auth = auth
        self.after_auth = after_auth or []
        self.during_auth = during_auth or []
        self.pongs = pongs
        self.acks = acks
        self.close_answer = close_answer
        self._inbox: list[tuple[float, int, Item]] = []
        self._order = itertools.count()
        self.sent: list[dict[str, Any]] = []
        self.closed_with: tuple[int, str, bool] | None = None
        self.ended: ConnectionEnded | None = None
        self.leftover: list[tuple[bytes, float | None]] = []
        self.arrived_at: float | None = None

    @property
    def closed(self) -> bool:
        return self.ended is not None

    # -- the script --------------------------------------------------------------

    def play(self, delay: float, item: Item) -> None:
        heapq.heappush(self._inbox, (self.clock.t + delay, next(self._order), item))

    def opened(self, clock: Clock) -> None:
        self.clock = clock
        for delay, item in self.during_auth:
            self.play(delay, item)

    # -- the Connection protocol -------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.ended is not None:
            raise self.ended
        frame = orjson.loads(data)
        self.sent.append(frame)
        kind = frame.get("type")
        if kind == "auth" and self.auth is not None:
            answer = self.auth
            if answer == b"ok":
                answer = orjson.dumps({"type": "auth_ok", "guestId": frame["guestId"], "sessionId": "s1",
                                       "idleTimeout": 60})
            self.play(RTT, answer)
            for delay, item in self.after_auth:
                self.play(RTT + delay, item)
        elif kind == "ping" and self.pongs:
            self.play(RTT, orjson.dumps({"type": "pong", "id": frame["id"]}))
        elif kind == "message" and self.acks:
            self.play(RTT, orjson.dumps({"type": "ack", "id": frame["id"], "ts": 1}))

    def recv(self, timeout: float | None) -> bytes | None:
        if self.ended is not None:
            raise self.ended
        clock = self.clock
        deadline = float("inf") if timeout is None else clock.t + max(0.0, timeout)
        if self._inbox and self._inbox[0][0] <= deadline:
            at, _, item = heapq.heappop(self._inbox)
            clock.t = max(clock.t, at)
            self.arrived_at = clock.t
            if isinstance(item, ConnectionEnded):
                self.ended = item
                raise item
            if isinstance(item, BaseException):
                raise item
            return item
        if deadline == float("inf"):
            raise AssertionError("the driver would wait forever")
        clock.t = deadline
        return None

    def close(self, code: int = 1000, reason: str = "", wait: bool = True) -> ConnectionEnded:
        self.closed_with = (code, reason, wait)
        if self.ended is not None:
            return self.ended
        if wait:  # frames already on their way arrive while we wait for the server's close
            while self._inbox and self._inbox[0][0] <= self.clock.t + SETTINGS.close_timeout_s:
                due, _, item = heapq.heappop(self._inbox)
                if isinstance(item, bytes):
                    self.leftover.append((item, max(due, self.clock.t)))  # read as it arrived
        self.ended = self.close_answer or ConnectionEnded(code, reason, "client")
        return self.ended


class StoppedMidUpgrade(NamedTuple):
    """A connect a stop interrupted: the transport records how it left the connection, then raises the stop."""

    stop: BaseException
    left: ConnectionEnded | UpgradeRefused


class FakeTransport:
    """Token endpoint and connects as scripted; ``sleep`` moves the clock."""

    def __init__(self, *connections: FakeConnection | BaseException | StoppedMidUpgrade,
                 tokens: list[Answer | BaseException] | None = None) -> None:
        self.clock = Clock()
        self.connections = list(connections)
        self.tokens = tokens if tokens is not None else [Answer(201, grant_body())]
        self.token_calls = 0
        self.connects = 0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.clock.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.t += max(0.0, seconds)

    def http(self, request: TokenRequest) -> Answer:
        self.token_calls += 1
        answer = self.tokens.pop(0) if len(self.tokens) > 1 else self.tokens[0]
        if isinstance(answer, BaseException):
            raise answer
        self.clock.t += answer.wire_s
        return answer

    def connect(self, url: str, headers: list[tuple[str, str]] | None = None,
                timeout: float | None = None, attempt: ConnectAttempt | None = None) -> Connection:
        self.connects += 1
        assert self.connections, "the driver connected more often than the test scripted"
        conn = self.connections.pop(0)
        self.clock.t += CONNECT_S
        if isinstance(conn, StoppedMidUpgrade):
            assert attempt is not None, "the driver gave the transport nowhere to say how it left"
            attempt.left = conn.left
            raise conn.stop
        if isinstance(conn, BaseException):
            raise conn
        conn.opened(self.clock)
        return conn


def _conforms(t: FakeTransport, c: FakeConnection) -> tuple[Transport, Connection]:
    """mypy: the fakes offer exactly what the real transport declares."""
    return t, c


# -- running a guest ---------------------------------------------------------------


class Run(NamedTuple):
    result: Result
    recorder: Recorder
    live: LiveSessions
    transport: FakeTransport


def run_guest(transport: FakeTransport, settings: HarnessSettings = SETTINGS, profile: Any = None,
              guest: str = "normal") -> Run:
    rec, live = Recorder(), LiveSessions()
    driver = SessionDriver(transport, profile or get_profile("guest"), rec, settings, "http://gateway.test",
                           live, rng=random.Random(7))
    result = driver.run_guest(1, behaviour(guest))
    return Run(result, rec, live, transport)


def run_guest_stopped(transport: FakeTransport, raised: type[BaseException],
                      settings: HarnessSettings = SETTINGS) -> tuple[Recorder, LiveSessions]:
    """A guest whose run ends in an exception the driver must record, then let go on."""
    rec, live = Recorder(), LiveSessions()
    driver = SessionDriver(transport, get_profile("guest"), rec, settings, "http://gateway.test", live,
                           rng=random.Random(7))
    with pytest.raises(raised):
        driver.run_guest(1, behaviour("normal"))
    return rec, live


def frame(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def server_close(code: int, reason: str = "") -> ConnectionEnded:
    return ConnectionEnded(code, reason, "server")


LOST = ConnectionEnded(1006, "", "none")


# -- assertions in the domain's words ------------------------------------------------


def assert_accounted(rec: Recorder, live: LiveSessions) -> None:
    assert live.open == 0, "a session is still counted open after the guest ended"
    assert rec.started == rec.ended_total + live.open, (rec.started, dict(rec.ended), live.open)


def assert_ended_as(run: Run | tuple[Recorder, LiveSessions], outcome: Outcome, phase: Phase) -> None:
    """One session, ended once, by ``outcome`` in ``phase``; the books balance."""
    rec, live = (run.recorder, run.live) if isinstance(run, Run) else run
    assert dict(rec.ended) == {(outcome.value, phase.value): 1}
    assert rec.started == 1
    assert_accounted(rec, live)
    if isinstance(run, Run):
        assert (run.result.outcome, run.result.phase) == (outcome, phase)


def assert_close_recorded(rec: Recorder, phase: Phase, code: int, initiator: str, reason: str = "") -> None:
    assert dict(rec.close_codes) == {(phase.value, code, reason, initiator): 1}


def assert_failed_before_auth(rec: Recorder, outcome: Outcome, detail: str) -> None:
    assert rec.authenticated == 0
    assert dict(rec.failures) == {(outcome.value, detail): 1}


def assert_we_closed(conn: FakeConnection, code: int, reason: str = "", wait: bool = True) -> None:
    assert conn.closed_with == (code, reason, wait)


# -- before the socket opens --------------------------------------------------------


def test_a_token_endpoint_answering_503_is_token_refused_in_token() -> None:
    run = run_guest(FakeTransport(tokens=[Answer(503, b"busy")]))
    assert_ended_as(run, Outcome.TOKEN_REFUSED, Phase.TOKEN)
    assert_failed_before_auth(run.recorder, Outcome.TOKEN_REFUSED, "HTTP 503")
    assert run.transport.connects == 0


def test_a_token_answer_the_profile_cannot_read_is_token_refused() -> None:
    run = run_guest(FakeTransport(tokens=[Answer(200, b"<html>")]))
    assert_ended_as(run, Outcome.TOKEN_REFUSED, Phase.TOKEN)
    assert run.transport.connects == 0


def test_a_token_endpoint_refusing_tcp_is_connect_refused_in_token() -> None:
    run = run_guest(FakeTransport(tokens=[ConnectRefused("token")]))
    assert_ended_as(run, Outcome.CONNECT_REFUSED, Phase.TOKEN)


def test_a_refused_websocket_connect_is_connect_refused_before_open() -> None:
    run = run_guest(FakeTransport(ConnectRefused("websocket")))
    assert_ended_as(run, Outcome.CONNECT_REFUSED, Phase.BEFORE_OPEN)
    assert run.recorder.latency["token"].count == 1
    assert run.recorder.latency["connect"].count == 0


def test_a_connect_timeout_is_connect_failed_before_open_with_its_reason() -> None:
    run = run_guest(FakeTransport(ConnectFailed("TCP connect timeout")))
    assert_ended_as(run, Outcome.CONNECT_FAILED, Phase.BEFORE_OPEN)
    assert_failed_before_auth(run.recorder, Outcome.CONNECT_FAILED, "TCP connect timeout")


def test_an_upgrade_answered_503_is_upgrade_refused_before_open() -> None:
    run = run_guest(FakeTransport(UpgradeRefused(503)))
    assert_ended_as(run, Outcome.UPGRADE_REFUSED, Phase.BEFORE_OPEN)
    assert_failed_before_auth(run.recorder, Outcome.UPGRADE_REFUSED, "HTTP 503")
    assert dict(run.recorder.close_codes) == {}


# -- during auth ------------------------------------------------------------------


def test_an_auth_refused_in_a_frame_is_auth_refused_whatever_the_close_code() -> None:
    refusal = frame(type="error", code=4003, message="bad token")
    conn = FakeConnection(auth=refusal, during_auth=[(RTT + 0.01, server_close(1011, "bye"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.AUTH_REFUSED, Phase.DURING_AUTH)
    assert run.recorder.errors["4003"] == 1
    assert_close_recorded(run.recorder, Phase.DURING_AUTH, 1011, "server", "bye")


@pytest.mark.parametrize("code", [1000, 1008, 4001, 4003])
def test_a_server_close_during_auth_with_a_refusal_code_is_auth_refused(code: int) -> None:
    conn = FakeConnection(auth=None, during_auth=[(0.2, server_close(code))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.AUTH_REFUSED, Phase.DURING_AUTH)
    assert_close_recorded(run.recorder, Phase.DURING_AUTH, code, "server")


def test_a_server_close_during_auth_with_another_code_is_a_drop_during_auth_not_a_refusal() -> None:
    conn = FakeConnection(auth=None, during_auth=[(0.2, server_close(1011))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.DROPPED_BY_SERVER, Phase.DURING_AUTH)
    assert not run.result.is_drop  # never authenticated: no reconnect, no drop rate


def test_no_auth_answer_within_the_auth_timeout_is_auth_timeout_and_we_close_1000() -> None:
    conn = FakeConnection(auth=None)
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.AUTH_TIMEOUT, Phase.DURING_AUTH)
    assert_we_closed(conn, 1000, "auth timeout")
    assert_close_recorded(run.recorder, Phase.DURING_AUTH, 1000, "client", "auth timeout")
    assert_failed_before_auth(run.recorder, Outcome.AUTH_TIMEOUT, "no auth answer within 15 s")


def test_the_servers_own_auth_timeout_close_4008_is_auth_timeout() -> None:
    conn = FakeConnection(auth=None, during_auth=[(10.0, server_close(4008, "auth timeout"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.AUTH_TIMEOUT, Phase.DURING_AUTH)
    assert conn.closed_with is None  # the server was first: nothing for us to close


def test_a_lost_link_during_auth_is_connection_lost_during_auth() -> None:
    conn = FakeConnection(auth=None, during_auth=[(0.3, LOST)])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.CONNECTION_LOST, Phase.DURING_AUTH)


# -- established ------------------------------------------------------------------


def test_a_session_that_lasts_its_length_is_closed_normally_with_every_round_trip_measured() -> None:
    conn = FakeConnection()
    run = run_guest(FakeTransport(conn))
    rec = run.recorder
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert_we_closed(conn, 1000)
    assert_close_recorded(rec, Phase.ESTABLISHED, 1000, "client")
    assert rec.authenticated == 1 and dict(rec.failures) == {}
    # pings at +20 s and +40 s; messages every 7 s until the end at +60 s
    assert [f["type"] for f in conn.sent].count("ping") == 2 == rec.latency["ping"].count
    assert rec.messages_sent == 8 == rec.messages_answered == rec.latency["message"].count
    for phase in ("auth", "ping", "message"):
        assert rec.latency[phase].max == pytest.approx(RTT * 1e6, abs=1), phase
    assert rec.latency["connect"].max == pytest.approx(CONNECT_S * 1e6, abs=1)
    assert rec.session_seconds == pytest.approx(LENGTH, abs=0.01)
    assert rec.survived.count == 1 and rec.dropped_at.count == 0


def test_a_server_close_a_second_after_auth_is_dropped_by_server_just_after_auth() -> None:
    conn = FakeConnection(after_auth=[(1.0, server_close(1011, "internal error"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.DROPPED_BY_SERVER, Phase.JUST_AFTER_AUTH)
    assert_close_recorded(run.recorder, Phase.JUST_AFTER_AUTH, 1011, "server", "internal error")
    assert run.result.is_drop and run.recorder.dropped_at.count == 1


def test_a_server_close_well_after_auth_is_dropped_by_server_established() -> None:
    conn = FakeConnection(after_auth=[(30.0, server_close(1001, "going away"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED)
    assert run.recorder.dropped_at.max == pytest.approx(30_000, abs=1)


class GoodbyeProfile:
    """The guest profile, plus a frame in which the server ends the session (as web messaging's
    ConnectionClosedEvent does)."""

    def __init__(self) -> None:
        self._guest = get_profile("guest")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._guest, name)

    def classify(self, data: bytes | str) -> ServerEvent:
        if data == b'{"type":"goodbye"}':
            return ServerEvent(EventKind.SESSION_ENDED, detail="goodbye")
        return self._guest.classify(data)


def test_a_server_ending_the_session_in_a_frame_is_dropped_by_server_and_we_close() -> None:
    conn = FakeConnection(after_auth=[(12.0, b'{"type":"goodbye"}')])
    run = run_guest(FakeTransport(conn), profile=GoodbyeProfile())
    assert_ended_as(run, Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED)
    assert_we_closed(conn, 1000)


def test_a_lost_link_while_established_is_connection_lost() -> None:
    conn = FakeConnection(after_auth=[(25.0, LOST)])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.CONNECTION_LOST, Phase.ESTABLISHED)
    assert_close_recorded(run.recorder, Phase.ESTABLISHED, 1006, "none")


def test_a_session_expired_frame_names_the_end_whatever_close_follows() -> None:
    conn = FakeConnection(after_auth=[(20.5, frame(type="session_expired")), (20.6, server_close(1000))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.SESSION_EXPIRED, Phase.ESTABLISHED)


def test_a_pong_for_a_ping_sent_before_the_session_expired_is_no_bad_frame() -> None:
    class ExpiresAfterAPing(FakeConnection):
        """The session expires between a ping and its pong; the pong still comes, then the close."""

        def send(self, data: bytes) -> None:
            f = orjson.loads(data)
            if f.get("type") == "ping" and self.pongs:
                self.pongs = False
                self.sent.append(f)
                self.play(RTT, frame(type="session_expired"))
                self.play(2 * RTT, orjson.dumps({"type": "pong", "id": f["id"]}))
                self.play(3 * RTT, server_close(4006, "session expired"))
                return
            super().send(data)

    conn = ExpiresAfterAPing()
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.SESSION_EXPIRED, Phase.ESTABLISHED)
    assert dict(+run.recorder.bad_frames) == {} and run.recorder.missed_pongs == 0
    assert run.recorder.pings_in_flight == 1  # its pong came after the session had expired: not timed
    assert_messages_accounted(run.recorder)


def test_a_close_4006_is_session_expired_without_a_frame() -> None:
    conn = FakeConnection(after_auth=[(3.0, server_close(4006, "session expired"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.SESSION_EXPIRED, Phase.JUST_AFTER_AUTH)


def test_no_pong_within_the_pong_timeout_is_keepalive_timeout_and_we_close_1001_without_waiting() -> None:
    conn = FakeConnection(pongs=False)
    run = run_guest(FakeTransport(conn))
    rec = run.recorder
    assert_ended_as(run, Outcome.KEEPALIVE_TIMEOUT, Phase.ESTABLISHED)
    assert_we_closed(conn, 1001, "keepalive timeout", wait=False)
    assert rec.missed_pongs == 1 and rec.latency["ping"].count == 0 and rec.pings_sent == 1
    assert_messages_accounted(rec)
    # the ping went at +20 s, given up at +30 s; the last frame was the ack of the message at +28 s
    assert rec.silence.count == 1 and rec.silence.max == pytest.approx((30 - 28 - RTT) * 1e6, abs=1)
    assert run.result.is_drop


def test_a_target_breaking_rfc_6455_is_protocol_error_and_a_bad_frame_of_its_kind() -> None:
    conn = FakeConnection(after_auth=[(8.0, TargetProtocolError(1002, "invalid opcode", "client"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.PROTOCOL_ERROR, Phase.ESTABLISHED)
    assert_close_recorded(run.recorder, Phase.ESTABLISHED, 1002, "client", "invalid opcode")
    assert dict(run.recorder.bad_frames) == {("bad_framing", "established"): 1}


def test_a_violation_racing_our_normal_close_is_protocol_error_counted_while_closing() -> None:
    raced = TargetProtocolError(1000, "", "client", "invalid_utf8", "invalid UTF-8 in a text frame")
    conn = FakeConnection(close_answer=raced)
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.PROTOCOL_ERROR, Phase.ESTABLISHED)
    assert dict(run.recorder.bad_frames) == {("invalid_utf8", "closing"): 1}


def test_a_frame_that_is_not_json_right_after_auth_is_counted_and_ends_the_session_1007() -> None:
    conn = FakeConnection(after_auth=[(0.5, b"<<garbage>>")])
    run = run_guest(FakeTransport(conn))
    rec = run.recorder
    assert_ended_as(run, Outcome.PROTOCOL_ERROR, Phase.JUST_AFTER_AUTH)
    assert_we_closed(conn, 1007, "bad frame: not_json")
    assert dict(rec.bad_frames) == {("not_json", "just_after_auth"): 1} and rec.bad_sessions == 1


def test_a_binary_frame_where_text_was_agreed_ends_the_session_1003() -> None:
    conn = FakeConnection(after_auth=[(9.0, BinaryFrame(b"\x00\x01"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.PROTOCOL_ERROR, Phase.ESTABLISHED)
    assert_we_closed(conn, 1003, "bad frame: binary_frame")
    assert dict(run.recorder.bad_frames) == {("binary_frame", "established"): 1}


def test_an_unknown_frame_type_is_counted_and_the_session_goes_on_to_a_normal_close() -> None:
    conn = FakeConnection(after_auth=[(9.0, frame(type="surprise"))])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert dict(run.recorder.bad_frames) == {("unknown_type", "established"): 1}
    assert run.recorder.bad_sessions == 1


def test_frames_arriving_while_we_close_are_still_counted() -> None:
    agent = frame(type="message", id="a-1", text="hi")
    conn = FakeConnection(after_auth=[(LENGTH + 0.5, agent)])
    run = run_guest(FakeTransport(conn))
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert [data for data, _at in conn.leftover] == [agent] and run.recorder.agent_messages == 1


def test_an_ack_and_a_pong_on_their_way_when_the_session_ends_are_round_trips_timed_from_their_arrival() -> None:
    """A message and a ping sent just before the planned end; their answers arrive while we close.

    The target answered both: each is a round trip like any other, timed
    from when it was read, not left neither answered nor unanswered.
    """
    settings = dataclasses.replace(SETTINGS, message_interval=(LENGTH - 0.03, LENGTH - 0.03),
                                   keepalive_s=LENGTH - 0.02)
    conn = FakeConnection()
    run = run_guest(FakeTransport(conn), settings)
    rec = run.recorder
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert [f["type"] for f in conn.sent] == ["auth", "message", "ping"]
    assert [orjson.loads(data)["type"] for data, _at in conn.leftover] == ["ack", "pong"]  # read while closing
    assert rec.messages_sent == rec.messages_answered == rec.latency["message"].count == 1
    assert rec.latency["ping"].count == 1 and rec.missed_pongs == 0
    for phase in ("message", "ping"):
        assert rec.latency[phase].max == pytest.approx(RTT * 1e6, abs=1), phase
    assert dict(rec.bad_frames) == {} and rec.messages_in_flight == 0 == rec.pings_in_flight
    assert rec.pings_sent == 1
    assert_messages_accounted(rec)


def test_a_second_answer_to_one_message_read_while_closing_is_an_unmatched_answer() -> None:
    """Once the ack answered its message, a duplicate read while closing answers nothing: counted so, once."""
    settings = dataclasses.replace(SETTINGS, message_interval=(LENGTH - 0.03, LENGTH - 0.03))
    conn = FakeConnection(acks=False, after_auth=[(LENGTH + 0.01, frame(type="ack", id="c-3", ts=1))] * 2)
    run = run_guest(FakeTransport(conn), settings)
    rec = run.recorder
    ref = next(f["id"] for f in conn.sent if f["type"] == "message")
    assert ref == "c-3", conn.sent  # the scripted duplicates answer the one message sent
    assert rec.messages_answered == rec.latency["message"].count == 1
    assert dict(rec.bad_frames) == {("unmatched_answer", "closing"): 1}


def assert_messages_accounted(rec: Recorder) -> None:
    """Every message sent is answered, unanswered (expired), refused, or was in flight when its session ended.

    And every ping: answered (its pong timed, or counted untimed), missed, refused, or in flight.
    """
    assert rec.messages_sent == (rec.messages_answered + rec.messages_unanswered + rec.messages_refused
                                 + rec.messages_in_flight), (rec.messages_sent, rec.messages_answered,
                                                             rec.messages_unanswered, rec.messages_refused,
                                                             rec.messages_in_flight)
    pongs = rec.latency["ping"].count + rec.untimed["ping"]
    assert rec.pings_sent == pongs + rec.missed_pongs + rec.pings_refused + rec.pings_in_flight, (
        rec.pings_sent, pongs, rec.missed_pongs, rec.pings_refused, rec.pings_in_flight)


def test_messages_without_an_ack_at_the_sessions_end_are_in_flight_and_a_refused_one_is_refused() -> None:
    """Eight messages (one every 7 s of 60); the target refuses the first (4029) and acks none of the rest."""
    conn = FakeConnection(acks=False, after_auth=[(7.01, frame(type="error", code=4029, id="c-1", retryAfter=1, message="slow down"))])
    run = run_guest(FakeTransport(conn), dataclasses.replace(SETTINGS, keepalive_s=3600.0))
    rec = run.recorder
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert next(f["id"] for f in conn.sent if f["type"] == "message") == "c-1"
    assert rec.messages_sent == 8 and rec.messages_answered == 0 and rec.messages_unanswered == 0
    assert rec.messages_refused == 1 and rec.messages_in_flight == 7 and dict(rec.errors) == {"4029": 1}
    assert_messages_accounted(rec)


def test_an_ack_on_its_way_when_the_harness_stops_the_session_is_answered_and_none_is_in_flight() -> None:
    """The stop's close (1001, waiting for the server's close) reads the ack: it answers its message."""
    settings = dataclasses.replace(SETTINGS, message_interval=(14.99, 14.99))
    conn = FakeConnection(after_auth=[(15.0, Stop())])  # the message at +14.99, its ack at +15.04
    rec, live = run_guest_stopped(FakeTransport(conn), Stop, settings)
    assert_ended_as((rec, live), Outcome.STOPPED_BY_HARNESS, Phase.ESTABLISHED)
    assert [orjson.loads(data)["type"] for data, _at in conn.leftover] == ["ack"]
    assert rec.messages_sent == rec.messages_answered == 1 and rec.messages_in_flight == 0
    assert_messages_accounted(rec)


def test_a_ping_awaiting_its_pong_when_the_session_expires_or_ends_is_in_flight() -> None:
    """The session-expired frame ends the wait for pongs (none will be timed); a stop ends it too."""
    conn = FakeConnection(pongs=False, after_auth=[(20.001, frame(type="session_expired"))])
    run = run_guest(FakeTransport(conn))
    rec = run.recorder
    assert rec.pings_sent == 1 and rec.pings_in_flight == 1 and rec.missed_pongs == 0
    assert_messages_accounted(rec)
    conn = FakeConnection(pongs=False, after_auth=[(20.5, Stop())])
    rec, _live = run_guest_stopped(FakeTransport(conn), Stop)
    assert rec.pings_sent == 1 and rec.pings_in_flight == 1 and rec.missed_pongs == 0
    assert_messages_accounted(rec)


# -- the harness's own ends ---------------------------------------------------------


def test_a_stop_while_established_is_stopped_by_harness_closed_1001_and_raised_on() -> None:
    conn = FakeConnection(after_auth=[(15.0, Stop())])
    rec, live = run_guest_stopped(FakeTransport(conn), Stop)
    assert_ended_as((rec, live), Outcome.STOPPED_BY_HARNESS, Phase.ESTABLISHED)
    assert_we_closed(conn, 1001, "harness stopping")
    assert_close_recorded(rec, Phase.ESTABLISHED, 1001, "client", "harness stopping")


class StopBegins(BaseException):
    """Stands for Locust's test_stopping: ``live.stopping`` turns on (the guest's greenlet is not killed yet)."""


class StoppingConnection(FakeConnection):
    """Plays ``StopBegins`` by setting ``live.stopping``, as loadkit.locust.lag does, and reads on."""

    live: LiveSessions

    def recv(self, timeout: float | None) -> bytes | None:
        while True:
            try:
                return super().recv(timeout)
            except StopBegins:
                self.live.stopping = True


def test_answers_read_once_the_run_is_stopping_count_but_are_not_timed() -> None:
    # Messages every 7 s, each acked RTT later. The stop begins between the second message and its
    # ack; the guest reads the ack (Locust has not killed it yet), then is stopped.
    conn = StoppingConnection(after_auth=[(14.0 + RTT / 2, StopBegins()), (15.0, Stop())])
    rec, live = Recorder(), LiveSessions()
    conn.live = live
    reported: list[str] = []
    driver = SessionDriver(FakeTransport(conn), get_profile("guest"), rec, SETTINGS, "http://gateway.test", live,
                           lambda name, ms, error, length: reported.append(name), rng=random.Random(7))
    with pytest.raises(Stop):
        driver.run_guest(1, behaviour("normal"))
    assert_ended_as((rec, live), Outcome.STOPPED_BY_HARNESS, Phase.ESTABLISHED)
    assert [f["type"] for f in conn.sent].count("message") == 2
    assert rec.messages_sent == rec.messages_answered == 2  # both answered ...
    assert rec.latency["message"].count == 1  # ... the one read while stopping not timed
    assert rec.untimed == {"message": 1}  # but counted as such
    assert reported.count("message") == 1  # nor in Locust's table
    assert rec.latency["auth"].count == rec.latency["token"].count == rec.latency["connect"].count == 1


def test_a_session_that_gets_through_auth_once_the_run_is_stopping_counts_it_without_timing_it() -> None:
    conn = StoppingConnection(during_auth=[(RTT / 2, StopBegins())], after_auth=[(1.0, Stop())])
    rec, live = Recorder(), LiveSessions()
    conn.live = live
    driver = SessionDriver(FakeTransport(conn), get_profile("guest"), rec, SETTINGS, "http://gateway.test", live,
                           rng=random.Random(7))
    with pytest.raises(Stop):
        driver.run_guest(1, behaviour("normal"))
    assert_ended_as((rec, live), Outcome.STOPPED_BY_HARNESS, Phase.JUST_AFTER_AUTH)
    assert rec.authenticated == 1 and rec.latency["auth"].count == 0 and rec.untimed == {"auth": 1}
    assert rec.latency["token"].count == rec.latency["connect"].count == 1  # read before the stop began


def test_a_stop_before_the_auth_ok_was_read_counts_it_authenticated_when_it_arrives_while_we_close() -> None:
    # the gateway answered (and counts the guest authenticated); the stop came before our read
    conn = FakeConnection(during_auth=[(RTT / 2, Stop())])
    rec, live = run_guest_stopped(FakeTransport(conn), Stop)
    assert_ended_as((rec, live), Outcome.STOPPED_BY_HARNESS, Phase.JUST_AFTER_AUTH)
    assert rec.authenticated == 1 and rec.latency["auth"].count == 0
    assert conn.leftover and orjson.loads(conn.leftover[0][0])["type"] == "auth_ok"
    assert_we_closed(conn, 1001, "harness stopping")


def test_a_stop_during_auth_with_no_answer_on_its_way_is_stopped_during_auth() -> None:
    conn = FakeConnection(auth=None, during_auth=[(RTT / 2, Stop())])
    rec, live = run_guest_stopped(FakeTransport(conn), Stop)
    assert_ended_as((rec, live), Outcome.STOPPED_BY_HARNESS, Phase.DURING_AUTH)
    assert rec.authenticated == 0


def test_a_stop_mid_upgrade_is_stopped_by_harness_before_open_with_the_close_the_transport_made() -> None:
    stop = StoppedMidUpgrade(Stop(), ConnectionEnded(1001, "harness stopping", "client"))
    rec, live = run_guest_stopped(FakeTransport(stop), Stop)
    assert_ended_as((rec, live), Outcome.STOPPED_BY_HARNESS, Phase.BEFORE_OPEN)
    assert_close_recorded(rec, Phase.BEFORE_OPEN, 1001, "client", "harness stopping")


def test_a_stop_mid_upgrade_that_the_server_refused_is_upgrade_refused() -> None:
    stop = StoppedMidUpgrade(Stop(), UpgradeRefused(429))
    rec, live = run_guest_stopped(FakeTransport(stop), Stop)
    assert_ended_as((rec, live), Outcome.UPGRADE_REFUSED, Phase.BEFORE_OPEN)


def test_a_bug_in_the_harness_is_harness_error_closed_1011_and_raised_on() -> None:
    conn = FakeConnection(after_auth=[(2.0, RuntimeError("a bug"))])
    rec, live = run_guest_stopped(FakeTransport(conn), RuntimeError)
    assert_ended_as((rec, live), Outcome.HARNESS_ERROR, Phase.JUST_AFTER_AUTH)
    assert_we_closed(conn, 1011, "harness error", wait=False)


def test_a_bug_whose_close_the_server_beat_stays_a_harness_error() -> None:
    conn = FakeConnection(after_auth=[(2.0, RuntimeError("a bug"))], close_answer=server_close(1000))
    rec, live = run_guest_stopped(FakeTransport(conn), RuntimeError)
    assert_ended_as((rec, live), Outcome.HARNESS_ERROR, Phase.JUST_AFTER_AUTH)


# -- reconnects ----------------------------------------------------------------------

RECONNECT = HarnessSettings(**{**SETTINGS.as_dict(), "reconnect": True})


def test_after_a_drop_the_guest_reconnects_with_its_grant_and_the_recovery_is_timed() -> None:
    first = FakeConnection(after_auth=[(10.0, server_close(1011))])
    second = FakeConnection()
    run = run_guest(FakeTransport(first, second), RECONNECT)
    rec = run.recorder
    assert dict(rec.ended) == {("dropped_by_server", "established"): 1, ("closed_normally", "established"): 1}
    assert rec.started == 2 and rec.authenticated == 2
    assert_accounted(rec, run.live)
    assert run.result.outcome is Outcome.CLOSED_NORMALLY
    assert run.transport.token_calls == 1  # the grant was reused: same identity
    assert rec.reconnect_attempts == 1 and rec.reconnect_successes == 1
    # the guest keeps its planned end: the second session runs out the first's 60 s
    pause = run.transport.slept[0]
    assert rec.recover.count == 1
    assert rec.recover.max == pytest.approx((pause + CONNECT_S + RTT) * 1e6, abs=2)
    assert rec.session_seconds == pytest.approx(LENGTH - pause - CONNECT_S - RTT, abs=0.01)


def test_a_reconnect_refused_is_retried_with_backoff_until_one_gets_through() -> None:
    first = FakeConnection(after_auth=[(10.0, LOST)])
    run = run_guest(FakeTransport(first, ConnectRefused("websocket"), FakeConnection()), RECONNECT)
    rec = run.recorder
    assert dict(rec.ended) == {("connection_lost", "established"): 1, ("connect_refused", "before_open"): 1,
                               ("closed_normally", "established"): 1}
    assert rec.started == 3
    assert_accounted(rec, run.live)
    assert rec.reconnect_attempts == 2 and rec.reconnect_successes == 1
    assert len(run.transport.slept) == 2


def test_a_refused_auth_does_not_reconnect_and_a_drop_without_reconnects_does_not_either() -> None:
    refused = FakeConnection(auth=None, during_auth=[(0.2, server_close(4001))])
    run = run_guest(FakeTransport(refused), RECONNECT)
    assert_ended_as(run, Outcome.AUTH_REFUSED, Phase.DURING_AUTH)
    assert run.recorder.reconnect_attempts == 0
    dropped = FakeConnection(after_auth=[(10.0, server_close(1011))])
    run = run_guest(FakeTransport(dropped), SETTINGS)
    assert_ended_as(run, Outcome.DROPPED_BY_SERVER, Phase.ESTABLISHED)
    assert run.recorder.reconnect_attempts == 0


# -- the web messaging goodbye: each request awaited ----------------------------------------

WM_GOODBYE_S = 5.0
SESSION_CLEARED = frame(type="message", **{"class": "SessionClearedEvent"}, code=200, body={})
CONNECTION_CLOSED = frame(type="message", **{"class": "ConnectionClosedEvent"}, code=200, body={})


def wm_response(cls: str, code: int, body: Any, tracing: str | None) -> bytes:
    return frame(type="response", **{"class": cls}, code=code, body=body, tracingId=tracing)


class WebMessagingFake(FakeConnection):
    """A Genesys web messaging socket: configureSession answered, each goodbye request as scripted.

    ``clear`` and ``close_session`` are lists of answers, one per request in
    order (the last repeats): ``"ok"`` (SessionClearedEvent / SessionResponse
    connected:false), ``None`` (no answer), ``("429", retry_after)``, an int
    error code, or a ``ConnectionEnded`` (the link goes instead).
    """

    def __init__(self, clear: list[Any] | None = None, close_session: list[Any] | None = None,
                 after_clear: list[tuple[float, Item]] | None = None) -> None:
        super().__init__()
        self.answers = {"clear": list(clear or ["ok"]), "close_session": list(close_session or ["ok"])}
        self.after_clear = after_clear or []
        self.goodbye_sent: list[tuple[str, float]] = []

    def send(self, data: bytes) -> None:
        if self.ended is not None:
            raise self.ended
        f = orjson.loads(data)
        self.sent.append(f)
        action, ref = f.get("action"), f.get("tracingId")
        if action == "configureSession":
            self.play(RTT, wm_response("SessionResponse", 200, {"connected": True, "newSession": True}, None))
        elif action == "echo":
            self.play(RTT, wm_response("StructuredMessage", 200, {"type": "Text", "direction": "Inbound",
                                                                   "text": "ping"}, ref))
        elif action == "onMessage" and f["message"]["type"] == "Text":
            self.play(RTT, frame(type="message", **{"class": "StructuredMessage"}, code=200, tracingId=ref,
                                 body={"type": "Text", "direction": "Inbound", "text": "x"}))
        elif action == "onMessage" or action == "closeSession":
            step = "clear" if action == "onMessage" else "close_session"
            self.goodbye_sent.append((step, self.clock.t))
            queue = self.answers[step]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            if answer == "ok" and step == "clear":
                self.play(RTT, SESSION_CLEARED)
                for delay, item in self.after_clear:
                    self.play(RTT + delay, item)
            elif answer == "ok":
                self.play(RTT, wm_response("SessionResponse", 200, {"connected": False}, ref))
            elif isinstance(answer, tuple):
                self.play(RTT, wm_response("TooManyRequestsErrorMessage", 429,
                                           {"retryAfter": answer[1], "errorCode": 4029}, ref))
            elif isinstance(answer, int):
                self.play(RTT, wm_response("string", answer, "refused", ref))
            elif isinstance(answer, ConnectionEnded):
                self.play(RTT, answer)


def run_wm_guest(conn: WebMessagingFake) -> Run:
    profile = get_profile("webmessaging", deployment_id="d-1", goodbye_timeout=WM_GOODBYE_S)
    return run_guest(FakeTransport(conn), profile=profile)


def goodbye_of(conn: WebMessagingFake) -> list[str]:
    return [step for step, _at in conn.goodbye_sent]


def test_a_web_messaging_goodbye_waits_for_both_answers_then_closes_normally() -> None:
    conn = WebMessagingFake()
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert goodbye_of(conn) == ["clear", "close_session"]
    # closeSession went out only once the Clear was confirmed
    assert conn.goodbye_sent[1][1] - conn.goodbye_sent[0][1] == pytest.approx(RTT)
    assert_we_closed(conn, 1000)
    assert dict(run.recorder.errors) == {}


def test_an_unanswered_clear_is_goodbye_incomplete_after_the_goodbye_timeout() -> None:
    conn = WebMessagingFake(clear=[None])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.GOODBYE_INCOMPLETE, Phase.ESTABLISHED)
    assert goodbye_of(conn) == ["clear"]  # no closeSession on a conversation not known to be over
    assert_we_closed(conn, 1000)
    assert_close_recorded(run.recorder, Phase.ESTABLISHED, 1000, "client")
    assert run.recorder.session_seconds == pytest.approx(LENGTH + WM_GOODBYE_S, abs=0.01)
    assert list(run.recorder.failure_details) == [
        "goodbye_incomplete in established: goodbye incomplete: no SessionClearedEvent within 5 s"]


def test_a_clear_refused_429_is_sent_again_after_retry_after() -> None:
    conn = WebMessagingFake(clear=[("429", 2), "ok"])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert goodbye_of(conn) == ["clear", "clear", "close_session"]
    assert conn.goodbye_sent[1][1] - conn.goodbye_sent[0][1] == pytest.approx(RTT + 2.0)
    assert dict(run.recorder.errors) == {"4029": 1}  # the target's refusal, counted


def test_a_retry_after_beyond_the_goodbye_timeout_is_goodbye_incomplete() -> None:
    conn = WebMessagingFake(clear=[("429", 30)])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.GOODBYE_INCOMPLETE, Phase.ESTABLISHED)
    assert goodbye_of(conn) == ["clear"] and dict(run.recorder.errors) == {"4029": 1}


def test_a_refused_close_session_is_goodbye_incomplete_and_the_targets_error() -> None:
    conn = WebMessagingFake(close_session=[400])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.GOODBYE_INCOMPLETE, Phase.ESTABLISHED)
    assert dict(run.recorder.errors) == {"400": 1}
    assert any("closeSession refused: 400 refused" in d for d in run.recorder.failure_details)


def test_the_link_lost_mid_goodbye_is_goodbye_incomplete_with_the_wire_close() -> None:
    conn = WebMessagingFake(clear=[LOST])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.GOODBYE_INCOMPLETE, Phase.ESTABLISHED)
    assert_close_recorded(run.recorder, Phase.ESTABLISHED, 1006, "none")
    assert conn.closed_with is None  # nothing left to close


def test_after_a_confirmed_clear_the_servers_connection_closed_and_close_end_the_goodbye_normally() -> None:
    # The SDKs' flow: SessionClearedEvent, then ConnectionClosedEvent, then the server closes.
    conn = WebMessagingFake(close_session=[None], after_clear=[(0.0, CONNECTION_CLOSED)])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    conn = WebMessagingFake(close_session=[None], after_clear=[(0.01, server_close(1000))])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert_close_recorded(run.recorder, Phase.ESTABLISHED, 1000, "server")


def test_an_echo_answering_nothing_sent_that_arrives_during_the_goodbye_is_an_unmatched_answer() -> None:
    stray = wm_response("StructuredMessage", 200, {"type": "Text", "direction": "Inbound", "text": "ping"},
                        "never-sent")
    conn = WebMessagingFake(after_clear=[(0.001, stray)])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert goodbye_of(conn) == ["clear", "close_session"]
    assert dict(+run.recorder.bad_frames) == {("unmatched_answer", "closing"): 1}


def test_an_echo_refused_429_is_the_targets_error_not_a_missed_pong() -> None:
    class RefusesTheFirstEcho(WebMessagingFake):
        def send(self, data: bytes) -> None:
            f = orjson.loads(data)
            if f.get("action") == "echo" and not getattr(self, "refused", False):
                self.refused = True
                self.sent.append(f)
                self.play(RTT, wm_response("TooManyRequestsErrorMessage", 429,
                                           {"retryAfter": 1, "errorCode": 4029}, f["tracingId"]))
                return
            super().send(data)

    conn = RefusesTheFirstEcho()
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert conn.refused and run.recorder.missed_pongs == 0 and dict(run.recorder.errors) == {"4029": 1}
    assert dict(+run.recorder.bad_frames) == {}
    assert run.recorder.pings_refused == 1
    assert_messages_accounted(run.recorder)


def test_session_not_found_for_close_session_after_a_confirmed_clear_is_no_error_of_the_target() -> None:
    conn = WebMessagingFake(close_session=[4007])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.CLOSED_NORMALLY, Phase.ESTABLISHED)
    assert dict(run.recorder.errors) == {}  # caused by our own goodbye: the session was gone


def test_a_server_close_before_the_clear_is_confirmed_is_goodbye_incomplete() -> None:
    conn = WebMessagingFake(clear=[server_close(1000)])
    run = run_wm_guest(conn)
    assert_ended_as(run, Outcome.GOODBYE_INCOMPLETE, Phase.ESTABLISHED)


def test_every_outcome_is_reached_by_some_test_here() -> None:
    """A new Outcome needs a test of its own in this file."""
    source = Path(__file__).read_text(encoding="utf-8")
    missing = [o.name for o in Outcome if f"Outcome.{o.name}," not in source]
    assert missing == []
    missing_phases = [p.name for p in Phase if f"Phase.{p.name})" not in source]
    assert missing_phases == []
