"""Every frame the target should not have sent is counted by kind and phase.

A scripted server (tests/rawserver.py) speaks the guest protocol over real
loopback sockets and puts one anomaly on the wire; the harness's own driver
(``GeventTransport`` + ``SessionDriver`` + ``Recorder``) runs one session
against it, and the counts must be exactly what the script sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from loadkit.lifecycle import Result
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.protocol.base import TokenGrant
from loadkit.report.build import build_report
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import Behaviour, HarnessSettings
from loadkit.transport import GeventTransport
from tests.rawserver import Conn, RawServer, binary, close, text

pytestmark = pytest.mark.timeout(30)

SETTINGS = HarnessSettings(
    session_seconds=(0.6, 0.6), keepalive_s=0.2, pong_timeout_s=2.0, message_interval=(0.15, 0.2),
    pause_between=(0.0, 0.0), connect_timeout_s=3.0, auth_timeout_s=1.0, close_timeout_s=1.0,
    just_after_auth_s=5.0, reconnect_max_attempts=0, survival_marks=(1,),
)
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


def one_session(script: Callable[[Conn], None], behaviour: Behaviour = Behaviour(),
                profile: Any = None, settings: HarnessSettings = SETTINGS,
                ) -> tuple[Recorder, Result, list[tuple[str, Any]]]:
    with RawServer(script) as srv:
        transport = GeventTransport(open_timeout=3, close_timeout=settings.close_timeout_s)
        rec, live, reports = Recorder(settings.survival_marks), LiveSessions(), []
        driver = SessionDriver(transport, profile or get_profile("guest"), rec, settings, srv.url, live,
                               lambda name, ms, err, n: reports.append((name, err)), random.Random(1))
        result, _grant, _end = driver.run_session(1, behaviour, TokenGrant("g-1", "t-1"), 0.6, None)
        transport.close()
    assert not srv.errors, srv.errors
    assert live.open == 0 and rec.started == rec.ended_total == 1
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

    with pytest.raises(ProfileOptionError, match="end_session_on.*unmatched_answers.*one of binary_frame"):
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
