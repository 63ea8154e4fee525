"""Every frame the target should not have sent is counted by kind and phase.

A scripted server (tests/rawserver.py) speaks the guest protocol over real
loopback sockets and puts one anomaly on the wire; the harness's own driver
(``GeventTransport`` + ``SessionDriver`` + ``Recorder``) runs one session
against it, and the counts must be exactly what the script sent.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from gevent import get_hub

from websockets.frames import Opcode

from loadkit.lifecycle import Result
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.protocol.base import TokenGrant
from loadkit.report.build import build_report
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import Behaviour, HarnessSettings
from loadkit.transport import GeventTransport
from tests.rawserver import Conn, RawServer, binary, close, ping, text
from tests.rawserver import frame as rawframe

pytestmark = pytest.mark.timeout(30)

SETTINGS = HarnessSettings(
    session_seconds=(0.6, 0.6), keepalive_s=0.2, pong_timeout_s=2.0, message_interval=(0.15, 0.2),
    pause_between=(0.0, 0.0), connect_timeout_s=3.0, auth_timeout_s=5.0, close_timeout_s=5.0,
    just_after_auth_s=5.0, reconnect_max_attempts=0, survival_marks=(1,),
)
NORMAL = Behaviour()  # the default guest: keepalive and messages on
AUTH_OK = text(orjson.dumps({"type": "auth_ok", "guestId": "g-1", "sessionId": "s-1", "idleTimeout": 30}))


def answer(data: bytes) -> bytes | None:
    """What a correct gateway answers to a client frame."""
    frame = orjson.loads(data)
    if frame.get("type") == "ping":
        return text(orjson.dumps({"type": "pong", "id": frame["id"]}))
    if frame.get("type") == "message":
        return text(orjson.dumps({"type": "ack", "id": frame["id"], "ts": 1}))
    return None


def gateway(after_auth: Callable[[Conn], bool | None] | None = None, auth: tuple[bytes, ...] = (AUTH_OK,),
            on_frame: Callable[[Conn, bytes], bool] | None = None) -> Callable[[Conn], None]:
    """A guest gateway: answers auth with ``auth``, then pings and messages, and echoes the close."""

    def script(c: Conn) -> None:
        if c.next_text() is None:
            return
        c.send(*auth)
        if after_auth is not None and after_auth(c):
            return  # the script closed the connection itself
        while True:
            got = c.next_frame()
            if got is None:
                return
            if got.opcode.name == "CLOSE":
                c.send(close(int.from_bytes(got.data[:2], "big") if got.data else 1000))  # the echo
                return
            if got.opcode.name not in ("TEXT", "BINARY"):
                continue
            data = bytes(got.data)
            if on_frame is not None and on_frame(c, data):
                continue
            reply = answer(data)
            if reply is not None:
                c.send(reply)

    return script


def one_session(script: Callable[[Conn], None], behaviour: Behaviour = NORMAL,
                profile: Any = None, settings: HarnessSettings = SETTINGS,
                ) -> tuple[Recorder, Result, list[tuple[str, Any]]]:
    """One session against ``script``; the driver runs in a thread of its own (its own gevent hub),
    so the event loop of the test process is never touched by these sockets."""
    out: list[Any] = []

    def run() -> None:
        transport = GeventTransport(open_timeout=3, close_timeout=settings.close_timeout_s)
        rec, live, reports = Recorder(settings.survival_marks), LiveSessions(), []
        driver = SessionDriver(transport, profile or get_profile("guest"), rec, settings, srv.url, live,
                               lambda name, ms, err, n: reports.append((name, err)), random.Random(1))
        try:
            result, _grant, _end = driver.run_session(1, behaviour, TokenGrant("g-1", "t-1"), 0.6, None)
            out.append((rec, result, reports, live.open))
        finally:
            transport.close()
            get_hub().destroy(destroy_loop=True)

    with RawServer(script) as srv:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(20)
    assert not srv.errors, srv.errors
    assert out, "the session did not end"
    rec, result, reports, still_open = out[0]
    assert still_open == 0 and rec.started == rec.ended_total == 1
    return rec, result, reports


def bad(rec: Recorder) -> dict[tuple[str, str], int]:
    return dict(+rec.bad_frames)


# -- kinds a profile decides ---------------------------------------------------------------


@pytest.mark.parametrize(("raw", "kind"), [
    (text(b'{"type":"typing"}'), "unknown_type"),
    (text(b'{"type":"auth_ok"}'), "missing_fields"),
    (text(b'{"type":"ack","id":"c-1"}'), "missing_fields"),
    (text(b'{"type":"pong","id":424242}'), "unmatched_answer"),
    (text(b'{"type":"ack","id":"c-999","ts":1}'), "unmatched_answer"),
    (text(b'{"type":"pong","id":[1,2]}'), "unmatched_answer"),
])
def test_a_readable_bad_frame_after_auth_is_counted_and_the_session_goes_on(raw: bytes, kind: str) -> None:
    rec, result, _ = one_session(gateway(lambda c: c.send(raw)))
    assert result.outcome.value == "closed_normally"
    assert bad(rec) == {(kind, "just_after_auth"): 1}
    assert rec.bad_sessions == 1


@pytest.mark.parametrize(("raw", "kind", "code"), [
    (binary(b'{"type":"pong","id":1}'), "binary_frame", 1003),
    (text(b"not json"), "not_json", 1007),
    (text(b"[1, 2]"), "not_object", 1007),
    (text(b"[" * 1100 + b"]" * 1100), "too_deep", 1007),
])
def test_an_unreadable_frame_ends_the_session_as_a_protocol_error_by_default(raw: bytes, kind: str,
                                                                             code: int) -> None:
    closes: list[Any] = []

    def after(c: Conn) -> bool:
        c.send(raw)
        closes.append(c.wait_close())
        c.send(close(int.from_bytes(closes[0].data[:2], "big")))
        return True

    rec, result, _ = one_session(gateway(after))
    assert (result.outcome.value, result.phase.value) == ("protocol_error", "just_after_auth")
    assert bad(rec) == {(kind, "just_after_auth"): 1}
    assert int.from_bytes(closes[0].data[:2], "big") == code  # what the target saw on the wire
    assert [(c, i) for (_p, c, _r, i) in rec.close_codes] == [(code, "client")]


def test_a_profile_can_tolerate_what_is_fatal_by_default() -> None:
    profile = get_profile("guest", end_session_on=[])
    rec, result, _ = one_session(gateway(lambda c: c.send(binary(b"\x00\x01"), text(b"nope"))), profile=profile)
    assert result.outcome.value == "closed_normally"
    assert bad(rec) == {("binary_frame", "just_after_auth"): 1, ("not_json", "just_after_auth"): 1}
    assert rec.bad_sessions == 1


def test_a_profile_can_make_unmatched_answers_fatal() -> None:
    profile = get_profile("guest", end_session_on=["unmatched_answer"])
    rec, result, _ = one_session(gateway(lambda c: c.send(text(b'{"type":"pong","id":99}'))), profile=profile)
    assert result.outcome.value == "protocol_error"
    assert bad(rec) == {("unmatched_answer", "just_after_auth"): 1}


def test_an_unknown_kind_in_end_session_on_is_one_clear_error() -> None:
    from loadkit.protocol.base import ProfileOptionError

    with pytest.raises(ProfileOptionError, match=r"end_session_on.*unmatched_answers.*one of binary_frame"):
        get_profile("guest", end_session_on=["unmatched_answers"])


def test_bad_frames_during_auth_are_counted_in_that_phase_and_a_good_answer_still_counts() -> None:
    auth = (text(b'{"type":"auth_ok","guestId":"g-1"}'), text(b'{"type":"pong","id":1}'), AUTH_OK)
    rec, result, _ = one_session(gateway(auth=auth))
    assert result.outcome.value == "closed_normally" and result.authenticated
    assert bad(rec) == {("missing_fields", "during_auth"): 1, ("unmatched_answer", "during_auth"): 1}


def test_a_duplicate_ack_is_an_answer_to_nothing() -> None:
    def twice(c: Conn, data: bytes) -> bool:
        reply = answer(data)
        if reply is not None and b'"ack"' in reply:
            c.send(reply, reply)
            return True
        return False

    rec, result, _ = one_session(gateway(on_frame=twice), Behaviour(keepalive=False))
    assert result.outcome.value == "closed_normally"
    assert rec.messages_sent >= 2 and rec.messages_answered == rec.messages_sent
    kinds = {k for k, _p in rec.bad_frames}
    assert kinds == {"unmatched_answer"}
    assert sum(rec.bad_frames.values()) == rec.messages_answered


def test_the_report_carries_count_by_kind_and_by_phase() -> None:
    auth = (text(b"{}"), AUTH_OK)
    rec, _result, _ = one_session(gateway(lambda c: c.send(text(b'{"type":"ack","id":"x","ts":1}')), auth=auth))
    report = build_report(rec, open_sessions=0, run={})
    assert report["bad_frames"] == {"count": 2, "by_kind": {"unknown_type": 1, "unmatched_answer": 1},
                                    "by_phase": {"during_auth": 1, "just_after_auth": 1}, "sessions": 1}
    assert report["messages"]["sent"] == rec.messages_sent > 0
    assert report["messages"]["answered"] == rec.messages_answered == rec.messages_sent


# -- RFC 6455, as the transport enforces it --------------------------------------------------


def _fail_then_echo(raw: bytes, closes: list[Any]) -> Callable[[Conn], bool]:
    def after(c: Conn) -> bool:
        c.send(raw)
        closes.append(c.wait_close())
        if closes[0] is not None:
            c.send(close(int.from_bytes(closes[0].data[:2], "big")))
        return True
    return after


@pytest.mark.parametrize(("raw", "kind", "code"), [
    (text(b'{"type":"pong","id":"\xff\xfe"}'), "invalid_utf8", 1007),
    (text('{"type":"ack","id":"\ud800"}'.encode("utf-8", "surrogatepass")), "invalid_utf8", 1007),
    (rawframe(0x1, b'{"type":"typing"}', rsv=0b100), "bad_framing", 1002),
    (rawframe(0x3, b"?"), "bad_framing", 1002),
])
def test_an_rfc_6455_violation_fails_the_connection_with_its_code_and_is_a_bad_frame(
        raw: bytes, kind: str, code: int) -> None:
    closes: list[Any] = []
    rec, result, _reports = one_session(gateway(_fail_then_echo(raw, closes)))
    assert (result.outcome.value, result.phase.value) == ("protocol_error", "just_after_auth")
    assert int.from_bytes(closes[0].data[:2], "big") == code  # §8.1: invalid UTF-8 is 1007, not "not JSON"
    assert bad(rec) == {(kind, "just_after_auth"): 1}
    assert [(c, i) for (_p, c, _r, i) in rec.close_codes] == [(code, "client")]
    # the wire's close reason is in the close table; the violation's text only in the details
    assert [r for (_p, _c, r, _i) in rec.close_codes] == [closes[0].data[2:].decode()]


def test_a_violation_that_races_our_own_close_is_a_protocol_error_with_the_close_that_was_on_the_wire() -> None:
    """The guest closes 1000 at its planned end; the server's answer breaks RFC 6455.

    The close table must show the frame that was really sent (1000, no
    reason), not the violation's text, and the session is a protocol error,
    not closed_normally.
    """
    seen: list[Any] = []

    def script(c: Conn) -> None:
        c.next_text()
        c.send(AUTH_OK)
        seen.append(c.wait_close())
        c.send(rawframe(0x1, b"{}", rsv=0b010), close(1000))

    rec, result, _reports = one_session(script, Behaviour(keepalive=False, messages=False))
    assert seen[0].data == b"\x03\xe8"  # our 1000, empty reason
    assert result.outcome.value == "protocol_error"
    assert [(c, r, i) for (_p, c, r, i) in rec.close_codes] == [(1000, "", "client")]
    assert bad(rec) == {("bad_framing", "closing"): 1}


def test_invalid_utf8_after_our_close_is_counted_as_such() -> None:
    def script(c: Conn) -> None:
        c.next_text()
        c.send(AUTH_OK)
        got = c.wait_close()
        c.send(text(b'{"type":"x\xc3"}'), close(int.from_bytes(got.data[:2], "big")))

    rec, result, _ = one_session(script, Behaviour(keepalive=False, messages=False))
    assert result.outcome.value == "closed_normally"
    assert bad(rec) == {("invalid_utf8", "closing"): 1}


def test_an_answer_to_nothing_sent_that_arrives_while_closing_is_an_unmatched_answer() -> None:
    def script(c: Conn) -> None:
        c.next_text()
        c.send(AUTH_OK)
        got = c.wait_close()
        c.send(text(b'{"type":"ack","id":"never-sent","ts":0}'), text(b'{"type":"pong","id":[1]}'),
               close(int.from_bytes(got.data[:2], "big")))

    rec, result, _ = one_session(script, Behaviour(keepalive=False, messages=False))
    assert result.outcome.value == "closed_normally"
    assert bad(rec) == {("unmatched_answer", "closing"): 2}


def test_answers_to_what_was_sent_that_arrive_while_closing_are_no_bad_frames() -> None:
    """The server holds every ack and pong until the guest closes, then sends them all: each answers a send."""
    kinds: list[set[str]] = []

    def script(c: Conn) -> None:
        c.next_text()
        c.send(AUTH_OK)
        held = []
        while True:
            got = c.next_frame()
            assert got is not None
            if got.opcode is Opcode.CLOSE:
                break
            held.append(orjson.loads(got.data))
        kinds.append({m["type"] for m in held})
        answers = [text(orjson.dumps({"type": "pong", "id": m["id"]} if m["type"] == "ping" else
                                     {"type": "ack", "id": m["id"], "ts": 1})) for m in held]
        c.send(*answers, close(int.from_bytes(got.data[:2], "big")))

    for _attempt in range(3):  # a stalled test process may close before it sent both a ping and a message
        rec, result, _ = one_session(script, NORMAL)
        assert result.outcome.value == "closed_normally"
        assert rec.missed_pongs == 0
        assert bad(rec) == {}
        if kinds[-1] == {"ping", "message"}:
            break
    assert kinds[-1] == {"ping", "message"}, kinds


def test_failure_texts_name_no_value_the_server_chose() -> None:
    """Close reasons and parser messages go to failure_details; Locust's rows stay few."""
    reasons = [f"reason {i} {'x' * i}" for i in range(30)]
    texts: set[str] = set()
    rec = Recorder((1,))
    for reason in reasons:
        def script(c: Conn, reason: str = reason) -> None:
            c.next_text()
            c.send(close(4000, reason))
            c.wait_close()
        r, _result, reports = one_session(script)
        texts |= {str(err) for _name, err in reports if err is not None}
        rec.merge(r)
    assert texts == {"closed 4000 by server", "dropped_by_server in during_auth: closed 4000 by server"}, texts
    assert len(rec.failure_details) == 2 * len(reasons)  # the auth step's and the session's, per reason
    assert all(len(k) <= 260 for k in rec.failure_details)


def test_an_answer_is_timed_when_it_was_read_not_after_the_pings_read_with_it() -> None:
    """A burst of RFC 6455 pings in the same read as auth_ok: answering them is the
    harness's work, and must not count as the target's auth latency."""
    burst = 5000
    span: list[float] = []

    def script(c: Conn) -> None:
        c.next_text()
        t0 = time.perf_counter()
        c.send(*[ping() for _ in range(burst)], AUTH_OK)
        pongs = 0
        while pongs < burst:
            got = c.next_frame()
            assert got is not None
            pongs += got.opcode.name == "PONG"
        span.append(time.perf_counter() - t0)  # until the client had answered every ping
        while (got := c.next_frame()) is not None and got.opcode.name != "CLOSE":
            pass
        c.send(close(1000))

    rec, result, _ = one_session(script, Behaviour(keepalive=False, messages=False))
    assert result.outcome.value == "closed_normally"
    auth_s = rec.latency["auth"].max / 1e6
    # Timed after the burst, auth would take at least the burst's whole answering time.
    assert auth_s < span[0] / 2, (auth_s, span[0])
