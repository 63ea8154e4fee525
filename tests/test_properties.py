"""Property tests: whatever the target sends, it ends as a classified event or a
classified connection end, never an exception, and the accounting holds.

Decoders get arbitrary bytes and arbitrary JSON; the session driver gets
arbitrary sequences of frames (text, binary, JSON that almost is a frame of
the protocol) and endings, through a scripted in-memory WebSocket (the real
transport is tested over loopback in test_bad_frames.py).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from loadkit.config import load_scenario
from loadkit.errors import ConnectionEnded, TargetProtocolError
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.protocol.base import BAD_FRAME_KINDS, BinaryFrame, EventKind, ServerEvent, Taken, TokenGrant
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import Behaviour, HarnessSettings

#: The shipped custom profile (the seed thread's variant), as a user's scenario builds it.
CUSTOM_SCENARIO = Path(__file__).resolve().parent.parent / "config" / "custom-seed-variant.toml"

PROFILES = {
    "guest": get_profile("guest"),
    "webmessaging": get_profile("webmessaging", deployment_id="d-1"),
    "custom": get_profile("custom", **dict(load_scenario(CUSTOM_SCENARIO).profile_options)),
}
#: Every property test is bounded: a fixed number of examples, each within a deadline
#: generous enough for a busy 2-core machine (a decoder call takes microseconds).
#: Where drawing an example costs more than checking it (nested JSON, frame sequences),
#: one example goes through every profile (or goodbye) in turn: each still sees as many
#: examples as before, for a third (a quarter) of the drawing.
DECODER_RUNS = settings(max_examples=200, deadline=1000)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
#: objects shaped like the protocols' frames, with values of any type
frame_like = st.fixed_dictionaries(
    {}, optional={
        "type": st.sampled_from(["auth_ok", "pong", "ack", "message", "error", "session_expired",
                                 "response", "typing"]) | json_values,
        "command": st.sampled_from(["auth", "Auth"]) | json_values,
        "from": st.sampled_from(["agent", "guest"]) | json_values,
        "class": st.sampled_from(["StructuredMessage", "SessionResponse", "TooManyRequestsErrorMessage",
                                  "SessionExpiredEvent", "ConnectionClosedEvent", "string"]) | json_values,
        "id": json_values, "code": st.sampled_from([200, 400, 4006, 4029, 4001]) | json_values,
        "body": json_values | st.fixed_dictionaries({}, optional={
            "direction": st.sampled_from(["Inbound", "Outbound"]) | json_values,
            "type": st.sampled_from(["Text", "Event"]) | json_values, "connected": json_values,
            "retryAfter": json_values, "errorCode": json_values}),
        "tracingId": json_values, "sessionId": json_values, "guestId": json_values,
        "idleTimeout": json_values, "ts": json_values, "text": json_values, "message": json_values,
        "retryAfter": json_values, "replyTo": json_values,
    })


def check_event(ev: Any) -> None:
    assert isinstance(ev, ServerEvent)
    assert isinstance(ev.kind, EventKind)
    assert ev.bad == "" or ev.bad in BAD_FRAME_KINDS
    if ev.kind in (EventKind.MALFORMED, EventKind.UNKNOWN):
        assert ev.bad, ev  # a frame not acted on always says which kind of bad it is


@pytest.mark.parametrize("name", sorted(PROFILES))
@DECODER_RUNS
@given(data=st.binary(max_size=200))
def test_every_profile_classifies_arbitrary_bytes(name: str, data: bytes) -> None:
    check_event(PROFILES[name].classify(data))


@DECODER_RUNS
@given(value=json_values | frame_like)
def test_every_profile_classifies_arbitrary_json(value: Any) -> None:
    data = orjson.dumps(value)
    for name in sorted(PROFILES):
        note(f"profile: {name}")
        ev = PROFILES[name].classify(data)
        check_event(ev)
        if not isinstance(value, dict):
            assert ev.bad == "not_object", name


# -- the driver, fed arbitrary frame sequences -------------------------------------------------

SETTINGS = HarnessSettings(
    session_seconds=(0.05, 0.05), keepalive_s=0.01, pong_timeout_s=0.02, message_interval=(0.01, 0.02),
    pause_between=(0.0, 0.0), connect_timeout_s=1.0, auth_timeout_s=0.05, close_timeout_s=0.01,
    just_after_auth_s=0.02, reconnect_max_attempts=0, survival_marks=(1,),
)


class ScriptedSocket:
    """An open WebSocket whose peer sends ``frames`` (one per recv), then ends as ``end``."""

    def __init__(self, clock: list[float], frames: list[bytes], end: ConnectionEnded | None) -> None:
        self.clock = clock
        self.frames = list(frames)
        self.end = end
        self.leftover: list[tuple[bytes, float | None]] = []
        self.closed = False
        self.arrived_at: float | None = None

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionEnded(1006, "", "none")

    def recv(self, timeout: float | None) -> bytes | None:
        if self.frames:
            self.clock[0] += 0.001
            self.arrived_at = self.clock[0]
            return self.frames.pop(0)
        if self.end is not None:
            self.closed = True
            raise self.end
        self.clock[0] += max(0.0, timeout or 0.0) + 0.001
        return None

    def close(self, code: int = 1000, reason: str = "", wait: bool = True) -> ConnectionEnded:
        self.closed = True
        self.leftover, self.frames = [(f, self.clock[0]) for f in self.frames[:3]], []
        return self.end or ConnectionEnded(code, reason, "client")


class ScriptedTransport:
    def __init__(self, frames: list[bytes], end: ConnectionEnded | None) -> None:
        self.clock = [0.0]
        self.frames, self.end = frames, end

    def now(self) -> float:
        return self.clock[0]

    def sleep(self, seconds: float) -> None:
        self.clock[0] += seconds

    def connect(self, url: str, headers: Any, timeout: float, attempt: Any = None) -> ScriptedSocket:
        return ScriptedSocket(self.clock, self.frames, self.end)


frames_st = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.binary(max_size=20).map(BinaryFrame),
        (json_values | frame_like).map(orjson.dumps),
    ),
    max_size=12,
)
ends = st.one_of(
    st.none(),
    st.builds(ConnectionEnded, st.sampled_from([1000, 1001, 1006, 1011, 4001, 4006, 4008]),
              st.text(max_size=10), st.sampled_from(["server", "client", "none"])),
    st.builds(TargetProtocolError, st.sampled_from([1002, 1007, 1009]), st.just(""), st.just("client"),
              st.sampled_from(["bad_framing", "invalid_utf8", "too_big"]), st.text(max_size=10)),
)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_st, end=ends, auth_ok_first=st.booleans())
def test_the_driver_ends_every_frame_sequence_classified_and_accounted(
        frames: list[bytes], end: ConnectionEnded | None, auth_ok_first: bool) -> None:
    for name in sorted(PROFILES):
        note(f"profile: {name}")
        # each driver gets its own copy of the ending: the exception is raised into it
        drive_one_session(name, frames, copy.copy(end), auth_ok_first)


def drive_one_session(name: str, frames: list[bytes], end: ConnectionEnded | None, auth_ok_first: bool) -> None:
    profile = PROFILES[name]
    auth_ok = {"guest": b'{"type":"auth_ok","guestId":"g","sessionId":"s","idleTimeout":30}',
               "custom": b'{"type":"auth_ok"}',
               "webmessaging": b'{"type":"response","class":"SessionResponse","code":200,"body":{"connected":true}}',
               }[name]
    script = ([auth_ok] if auth_ok_first else []) + frames
    rec, live = Recorder((1,)), LiveSessions()
    reports: list[Any] = []
    driver = SessionDriver(ScriptedTransport(script, end), profile, rec, SETTINGS, "http://127.0.0.1:1", live,
                           lambda n, ms, err, ln: reports.append(err), random.Random(0))
    result, _grant, _end = driver.run_session(1, Behaviour(), TokenGrant("g", "t"), 0.05, None)
    assert rec.started == rec.ended_total == 1 and live.open == 0
    assert result.outcome.value in {o for o, _p in rec.ended}
    assert all(kind in BAD_FRAME_KINDS for kind, _p in rec.bad_frames)
    assert rec.bad_sessions == (1 if rec.bad_frames else 0)
    assert rec.messages_answered <= rec.messages_sent
    assert rec.messages_sent == (rec.messages_answered + rec.messages_unanswered + rec.messages_refused
                                 + rec.messages_in_flight)
    assert rec.pings_sent == (rec.latency["ping"].count + rec.untimed["ping"] + rec.missed_pongs
                              + rec.pings_refused + rec.pings_in_flight)
    assert result.outcome.value != "harness_error"
    if isinstance(end, TargetProtocolError) and result.authenticated is False and not rec.bad_frames:
        pytest.fail("a protocol error went uncounted")


# -- the web messaging goodbye, fed arbitrary events -------------------------------------------

goodbye_events = st.builds(
    ServerEvent,
    st.sampled_from(list(EventKind)),
    ref=st.none() | st.text(max_size=8),
    code=st.none() | st.sampled_from([200, 400, 4006, 4007, 4029, 429]),
    retry_after=st.none() | st.floats(0.001, 60.0),
    detail=st.sampled_from(["", "SessionClearedEvent", "ConnectionClosedEvent", "LogoutEvent",
                            "SessionResponse connected=false", "Inbound Event"]),
)


@settings(max_examples=200, deadline=1000)
@given(events=st.lists(st.tuples(goodbye_events, st.booleans(), st.floats(0.0, 3.0)), max_size=12))
def test_the_goodbye_flow_takes_any_events_and_ends_done_failed_or_waiting(
        events: list[tuple[ServerEvent, bool, float]]) -> None:
    """Whatever comes during a goodbye: no exception, one request in flight at most, one end."""
    for goodbye in ["both", "clear", "close_session", "none"]:
        note(f"goodbye: {goodbye}")
        # each flow gets its own copy of the events: answering ours sets their ref
        one_goodbye(goodbye, copy.deepcopy(events))


def one_goodbye(goodbye: str, events: list[tuple[ServerEvent, bool, float]]) -> None:
    flow = get_profile("webmessaging", deployment_id="d-1", goodbye=goodbye).goodbye_flow(TokenGrant("g", "t"))
    now = 0.0
    for ev, answers_ours, step in events:
        sent = flow.frames(now)
        assert len(sent) <= 1 and all(isinstance(f, bytes) for f in sent)
        if answers_ours and flow.ref is not None:
            ev.ref = flow.ref
        taken = flow.feed(ev, now)
        assert isinstance(taken, Taken)
        assert not (flow.done and flow.failed)
        if flow.done or flow.failed:
            assert flow.frames(now + 100.0) == [] and flow.feed(ev, now) is Taken.NOT_MINE
        now += step
    assert flow.done or flow.failed or flow.waiting_for() != "nothing"
