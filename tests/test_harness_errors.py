"""Errors by their true source: a fault injected into the harness is a harness_error, never the target's.

Fake transports inject the fault at each place where one used to be
mistaken for the target's doing: the token call, the token step's parsing,
and the close. Also: a second kill during a close's I/O still ends the
session exactly once.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import orjson
import pytest

from loadkit.lifecycle import Outcome
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import HarnessSettings, behaviour
from loadkit.transport import HttpAnswer

SETTINGS = HarnessSettings(session_seconds=(0.0, 0.0), reconnect=False, reconnect_max_attempts=0)
GRANT = orjson.dumps({"guestId": "g1", "token": "t1", "expiresAt": int(time.time()) + 600})


class FakeWs:
    """Answers auth, then lets the session end; ``close`` does what the test says."""

    def __init__(self, close: Any = None) -> None:
        self.leftover: list[tuple[bytes, float | None]] = []
        self.closed = False
        self._close = close
        self.aborted = False
        self._frames = [b'{"type":"auth_ok","sessionId":"s1"}']

    def send(self, data: bytes) -> None:
        pass

    def recv(self, timeout: float | None) -> bytes | None:
        return self._frames.pop(0) if self._frames else None

    def close(self, code: int, reason: str, wait: bool = True) -> Any:
        if self._close is not None:
            return self._close(code, reason)
        from loadkit.errors import ConnectionEnded
        return ConnectionEnded(code, reason, "client")

    def abort(self) -> None:
        self.aborted = True


class FakeTransport:
    now = staticmethod(time.perf_counter)

    def __init__(self, http: Any = None, ws: Any = None) -> None:
        self._http = http
        self.ws = ws or FakeWs()

    def sleep(self, s: float) -> None:
        pass

    def http(self, _req: Any) -> HttpAnswer:
        if self._http is not None:
            return self._http()  # type: ignore[no-any-return]
        return HttpAnswer(201, GRANT, 0.001, 0.0)

    def connect(self, url: str, headers: Any, timeout: float, attempt: Any = None) -> FakeWs:
        return self.ws


def run(transport: FakeTransport, profile: Any = None) -> tuple[Recorder, LiveSessions, Any]:
    rec, live = Recorder(), LiveSessions()
    driver = SessionDriver(transport, profile or get_profile("guest"), rec, SETTINGS, "http://127.0.0.1:1",
                           live, rng=random.Random(1))
    try:
        result = driver.run_guest(1, behaviour("normal"))
    except Exception as exc:  # a harness error goes on to Locust, after it is counted
        result = exc
    return rec, live, result


def assert_harness_error(rec: Recorder, live: LiveSessions) -> None:
    assert live.open == 0
    assert rec.outcomes() == {Outcome.HARNESS_ERROR.value: 1}, rec.outcomes()


def test_an_unexpected_exception_in_the_token_call_is_a_harness_error_not_connect_failed() -> None:
    def boom() -> HttpAnswer:
        raise RuntimeError("bug in the token client")
    rec, live, result = run(FakeTransport(http=boom))
    assert isinstance(result, RuntimeError)
    assert_harness_error(rec, live)
    assert not rec.close_codes


def test_a_bug_in_the_token_step_is_not_a_token_refusal() -> None:
    profile = get_profile("guest")

    class Buggy(type(profile)):  # type: ignore[misc]
        def token_grant(self, status: Any, body: bytes, guest_no: int) -> Any:
            raise KeyError("bug while reading the grant")
    rec, live, _ = run(FakeTransport(), Buggy())
    assert_harness_error(rec, live)
    assert Outcome.TOKEN_REFUSED.value not in rec.outcomes()


def test_a_failing_close_records_no_close_code_that_was_not_on_the_wire(caplog: pytest.LogCaptureFixture) -> None:
    def broken(code: int, reason: str) -> Any:
        raise AttributeError("bug in the close")
    ws = FakeWs(close=broken)
    with caplog.at_level(logging.ERROR, "loadkit"):
        rec, live, _ = run(FakeTransport(ws=ws))
        run(FakeTransport(ws=FakeWs(close=broken)))  # the same site again
    assert_harness_error(rec, live)
    assert not rec.close_codes  # the 1000 we meant to send is not claimed
    assert ws.aborted
    logged = [r for r in caplog.records if "harness error AttributeError" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # a traceback, once per site


def test_a_second_kill_during_the_close_still_ends_the_session_once() -> None:
    import gevent

    class SlowClose(FakeWs):
        def recv(self, timeout: float | None) -> bytes | None:
            if self._frames:
                return self._frames.pop(0)
            gevent.sleep(10)  # established: waits here until killed
            return None

        def close(self, code: int, reason: str, wait: bool = True) -> Any:
            gevent.sleep(10)  # the close's I/O, killed again
            raise AssertionError("unreachable")

    rec, live = Recorder(), LiveSessions()
    settings = HarnessSettings(session_seconds=(60.0, 60.0), reconnect=False, reconnect_max_attempts=0)
    driver = SessionDriver(FakeTransport(ws=SlowClose()), get_profile("guest"), rec, settings,
                           "http://127.0.0.1:1", live, rng=random.Random(1))
    g = gevent.spawn(driver.run_guest, 1, behaviour("normal"))
    gevent.sleep(0.05)
    g.kill(block=False)
    gevent.sleep(0.05)  # now inside the close
    g.kill(block=True, timeout=2)
    assert g.dead
    assert live.open == 0
    assert rec.ended_total == 1 and rec.started == 1
    assert rec.outcomes() == {Outcome.STOPPED_BY_HARNESS.value: 1}
