"""What an idle guest keeps for its life stays small: structural checks, no memory thresholds.

An idle guest's memory is the harness's capacity (docs/capacity.md, "idle
guest"). The figures are measured by ``bench/run.py --only idle``; these
tests keep the structure that the figures rest on: the objects a session
holds for its life have slots (no per-instance ``__dict__``), and the
tables a session shares until it needs its own (``_NONE_PENDING``) are
never written, whatever the session did.
"""

from __future__ import annotations

import random

import orjson
import pytest

from loadkit.lifecycle import Lifecycle
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.session import LiveSessions, SessionDriver
from loadkit.session import established
from loadkit.settings import HarnessSettings
from loadkit.transport.socketio import SocketIO, TlsSocketIO
from loadkit.transport.websocket import TlsWebSocket, WebSocket
from tests.test_session_driver import FakeConnection, FakeTransport, run_guest


class RateLimiting(FakeConnection):
    """Refuses every message 4029 (with its id) instead of acking it."""

    def send(self, data: bytes) -> None:
        super().send(data)
        sent = self.sent[-1]
        if sent.get("type") == "message":
            self.play(0.01, orjson.dumps({"type": "error", "code": 4029, "id": sent["id"], "retryAfter": 1,
                                           "message": "slow down"}))


def _has_no_instance_dict(cls: type) -> bool:
    """Every class of ``cls``'s MRO but ``object`` declares ``__slots__``: its instances have no ``__dict__``."""
    return all("__slots__" in vars(c) for c in cls.__mro__ if c is not object)


@pytest.mark.parametrize("cls", [SessionDriver, Lifecycle, LiveSessions, WebSocket, TlsWebSocket,
                                 SocketIO, TlsSocketIO])
def test_what_a_session_holds_for_its_life_has_slots(cls: type) -> None:
    assert _has_no_instance_dict(cls), f"{cls.__name__} (or a base) has no __slots__: a __dict__ per guest"


def test_a_driver_has_no_instance_dict() -> None:
    driver = SessionDriver(FakeTransport(), get_profile("guest"), Recorder(), HarnessSettings(),
                           "http://gateway.test", LiveSessions(), rng=random.Random(1))
    assert not hasattr(driver, "__dict__")
    with pytest.raises(AttributeError):
        driver.not_a_field = 1  # type: ignore[attr-defined]


def test_the_shared_empty_pending_tables_are_never_written() -> None:
    """Sessions that send, get answers, lose them to expiry and get refused leave the shared table empty."""
    chatty = HarnessSettings(session_seconds=(300.0, 300.0), keepalive_s=20.0, pong_timeout_s=10.0,
                             message_interval=(2.0, 5.0), reconnect=False)
    idle = HarnessSettings(session_seconds=(300.0, 300.0), keepalive_s=20.0, message_interval=(3600.0, 3600.0),
                           reconnect=False)
    runs = [
        run_guest(FakeTransport(FakeConnection()), chatty),                      # answered
        run_guest(FakeTransport(FakeConnection(acks=False)), chatty),            # unanswered: they expire
        run_guest(FakeTransport(RateLimiting(acks=False)), chatty),              # refused (4029)
        run_guest(FakeTransport(FakeConnection()), idle),                        # never sends a message
    ]
    assert runs[0].recorder.messages_answered > 0
    assert runs[1].recorder.messages_unanswered > 0
    assert runs[2].recorder.errors["4029"] > 0
    assert runs[3].recorder.messages_sent == 0
    assert established._NONE_PENDING == {}


def test_sessions_share_one_message_text_per_length() -> None:
    a = established._message_text(120)
    assert a == ("hello from loadkit " * 7)[:120] and len(a) == 120
    assert established._message_text(120) is a
