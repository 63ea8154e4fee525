"""The custom profile: a gateway described in a scenario file, and a hook for the rest.

Pure tests first (templates, matchers, token call, errors, hooks), then the
seed thread's variant end to end against the reference gateway configured
to expect it, with both sides' counts compared.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import orjson
import pytest

from loadkit.config import load_scenario
from loadkit.errors import LocalProtocolError
from loadkit.gateway.process import GatewayProcess
from loadkit.metrics.recorder import Recorder
from loadkit.protocol import get_profile
from loadkit.protocol.base import EventKind, ProfileOptionError, TokenGrant, auth_styles
from loadkit.session import LiveSessions, SessionDriver
from loadkit.settings import HarnessSettings, behaviour
from loadkit.transport import GeventTransport
from tests.harness import settled_stats

E = EventKind
ROOT = Path(__file__).resolve().parent.parent
SEED_VARIANT = ROOT / "config" / "custom-seed-variant.toml"
GRANT = TokenGrant("guest-1", "tok/en+1")


@pytest.fixture(scope="module")
def seed_options() -> dict[str, Any]:
    return dict(load_scenario(SEED_VARIANT).profile_options)


@pytest.fixture
def seed(seed_options: dict[str, Any]) -> Any:
    return get_profile("custom", **seed_options)


def decode(frame: bytes | None) -> Any:
    assert frame is not None
    return orjson.loads(frame)


# --- frames out: templates -----------------------------------------------------------------------


def test_the_seed_threads_auth_frame_is_written_exactly(seed: Any) -> None:
    assert decode(seed.auth_frame(GRANT)) == {"command": "auth", "guestId": "guest-1", "token": "tok/en+1",
                                              "version": "1.0"}


def test_a_placeholder_alone_keeps_its_type_and_inside_text_becomes_text(seed: Any) -> None:
    frame, ref = seed.ping_frame(7, GRANT)
    assert decode(frame) == {"type": "ping", "id": 7} and ref == "7"
    frame, ref = seed.message_frame(8, 'say "hi"\n', GRANT)
    assert decode(frame) == {"type": "message", "id": "c-8", "text": 'say "hi"\n'} and ref == "c-8"


def test_id_is_a_fresh_uuid_per_frame_and_ts_ms_is_now() -> None:
    p = get_profile("custom", websocket_path="/ws", frames={
        "auth": {"a": "{id}", "b": "{id}", "at": "{ts_ms}"},
        "ping": {"id": "{id}"}, "message": {"id": "m-{seq}", "t": "{text}", "at": "sent at {ts_ms}"}},
        match=[{"kind": "auth_ok", "when": {"ok": True}}, {"kind": "pong", "when": {"p": 1}, "ref": "id"},
               {"kind": "ack", "when": {"a": 1}, "ref": "id"}])
    first, second = decode(p.auth_frame(GRANT)), decode(p.auth_frame(GRANT))
    assert first["a"] == first["b"] != second["a"] and uuid.UUID(first["a"]).version == 4
    assert abs(first["at"] - time.time() * 1000) < 5000 and isinstance(first["at"], int)
    assert p.ping_frame(1, GRANT)[1] != p.ping_frame(1, GRANT)[1]
    assert decode(p.message_frame(2, "x", GRANT)[0])["at"].startswith("sent at ")


def test_literal_braces_are_doubled_and_vars_are_placeholders() -> None:
    p = get_profile("custom", websocket_path="/ws/{token}?v={v}", vars={"v": "1.0"}, frames={
        "auth": {"raw": "{{not a placeholder}}", "v": "{v}"}, "ping": {"id": "{seq}"}, "message": {"id": "{seq}"}},
        match=[{"kind": "auth_ok", "when": {"ok": True}}, {"kind": "pong", "when": {"p": 1}, "ref": "id"},
               {"kind": "ack", "when": {"a": 1}, "ref": "id"}])
    assert decode(p.auth_frame(GRANT)) == {"raw": "{not a placeholder}", "v": "1.0"}
    assert p.websocket_url("https://gw.example:8443/base", GRANT) == "wss://gw.example:8443/base/ws/tok%2Fen%2B1?v=1.0"


def test_the_auth_styles_are_those_the_file_describes(seed: Any) -> None:
    assert auth_styles(seed) == ("normal", "none", "bad_token", "wrong_case")
    assert seed.auth_frame(GRANT, "none") is None
    assert decode(seed.auth_frame(GRANT, "wrong_case"))["command"] == "Auth"
    assert decode(seed.auth_frame(GRANT, "bad_token"))["token"] == "tok/XXXX"
    with pytest.raises(LocalProtocolError):
        seed.auth_frame(GRANT, "command")


def test_no_goodbye_frames_unless_described(seed: Any) -> None:
    assert seed.goodbye_frames(GRANT) == []


# --- the token call ------------------------------------------------------------------------------


def test_the_token_call_is_described_and_its_answer_read_by_paths(seed: Any) -> None:
    req = seed.token_request("http://127.0.0.1:9/prefix", 17)
    assert (req.method, req.url) == ("POST", "http://127.0.0.1:9/prefix/api/v2/guests")
    assert decode(req.body) == {"displayName": "Load Guest 17"}
    assert ("Content-Type", "application/json") in req.headers
    grant = seed.token_grant(201, b'{"guestId":"g","token":"t","expiresAt":1795823231}', 17)
    assert (grant.guest_id, grant.token, grant.expires_at) == ("g", "t", 1795823231.0)
    with pytest.raises(ValueError, match="nothing at 'token'"):
        seed.token_grant(201, b'{"guestId":"g"}', 17)
    with pytest.raises(ValueError, match="not JSON"):
        seed.token_grant(201, b"<html>", 17)


def test_nested_token_paths_and_a_generated_token() -> None:
    base = {"websocket_path": "/ws", "frames": {"auth": {"t": "{token}"}, "ping": {"id": "{seq}"},
                                                "message": {"id": "{seq}"}},
            "match": [{"kind": "auth_ok", "when": {"ok": True}}, {"kind": "pong", "when": {"p": 1}, "ref": "id"},
                      {"kind": "ack", "when": {"a": 1}, "ref": "id"}]}
    nested = get_profile("custom", **base, token={"path": "/t", "guest_id": "data.guest.id", "token": "data.keys.0"})
    assert nested.token_grant(200, b'{"data":{"guest":{"id":5},"keys":["k1","k2"]}}', 1) == TokenGrant("5", "k1")
    generated = get_profile("custom", **base)
    assert generated.token_request("http://x", 1) is None
    grant = generated.token_grant(None, b"", 1)
    assert uuid.UUID(grant.token).version == 4 and uuid.UUID(grant.guest_id).version == 4


# --- frames in: matchers --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, kind, ref, code, retry", [
    ({"type": "auth_ok", "guestId": "g", "sessionId": "s", "idleTimeout": 30}, E.AUTH_OK, None, None, None),
    ({"type": "pong", "id": 7}, E.PONG, "7", None, None),
    ({"type": "ack", "id": "c-3", "ts": 1795823231123}, E.ACK, "c-3", None, None),
    ({"type": "message", "from": "agent", "id": "a-1", "text": "hi", "replyTo": "c-3"}, E.AGENT_MESSAGE, "c-3", None, None),
    ({"type": "error", "code": 4029, "message": "rate limited", "retryAfter": 1, "id": "c-4"}, E.RATE_LIMITED, "c-4", 4029, 1.0),
    ({"type": "error", "code": 4001, "message": "unauthorized"}, E.AUTH_REFUSED, None, 4001, None),
    ({"type": "error", "code": 4003, "message": "forbidden"}, E.AUTH_REFUSED, None, 4003, None),
    ({"type": "error", "code": 4011, "message": "too long", "id": "c-5"}, E.ERROR, "c-5", 4011, None),
    ({"type": "session_expired"}, E.SESSION_EXPIRED, None, None, None),
    ({"type": "typing"}, E.UNKNOWN, None, None, None),
])
def test_each_guest_protocol_frame_is_classified_by_the_seed_variants_matchers(
        seed: Any, raw: dict[str, Any], kind: EventKind, ref: Any, code: Any, retry: Any) -> None:
    ev = seed.classify(orjson.dumps(raw))
    assert (ev.kind, ev.ref, ev.code, ev.retry_after) == (kind, ref, code, retry)
    if kind is E.AUTH_OK:
        assert ev.fields == raw


def test_replies_are_correlated_when_an_agent_message_matcher_has_a_ref(seed: Any, seed_options: dict[str, Any]) -> None:
    from loadkit.protocol.base import reply_refs

    assert reply_refs(seed) is True
    without = [m for m in seed_options["match"] if m["kind"] != "agent_message"]
    assert reply_refs(get_profile("custom", **{**seed_options, "match": without})) is False


def test_frames_that_are_not_objects_are_malformed(seed: Any) -> None:
    assert seed.classify(b"nope").kind is E.MALFORMED and seed.classify(b"[1]").kind is E.MALFORMED


def test_a_ping_and_a_message_round_trip_through_the_gateways_answers(seed: Any) -> None:
    frame, ref = seed.ping_frame(12, GRANT)
    assert seed.classify(orjson.dumps({"type": "pong", "id": decode(frame)["id"]})).ref == ref
    frame, ref = seed.message_frame(13, "hello", GRANT)
    sent = decode(frame)
    assert seed.classify(orjson.dumps({"type": "ack", "id": sent["id"], "ts": 1})).ref == ref
    reply = {"type": "message", "from": "agent", "id": "a-1", "text": "x", "replyTo": sent["id"]}
    assert seed.classify(orjson.dumps(reply)).ref == ref


def test_matchers_test_nested_paths_presence_and_types_strictly() -> None:
    p = get_profile("custom", websocket_path="/ws", frames={
        "auth": {"a": 1}, "ping": {"id": "{seq}"}, "message": {"id": "{seq}"}}, match=[
        {"kind": "auth_ok", "when": {"body.ok": True}},
        {"kind": "pong", "when": {"body.kind": "pong", "error": {"exists": False}}, "ref": "body.seq"},
        {"kind": "ack", "when": {"ack": 1}, "ref": "id"},
        {"kind": "ignored", "when": {"error": {"exists": True}}}])
    assert p.classify(b'{"body":{"ok":true}}').kind is E.AUTH_OK
    assert p.classify(b'{"body":{"ok":1}}').kind is E.UNKNOWN  # 1 is not true
    assert p.classify(b'{"body":{"kind":"pong","seq":3}}').ref == "3"
    assert p.classify(b'{"body":{"kind":"pong","seq":3},"error":null}').kind is E.IGNORED
    assert p.classify(b'{"ack":1.0,"id":2}').kind is E.ACK  # numbers compare as numbers


# --- every bad part at once, each with its key ------------------------------------------------------------


def test_every_problem_of_a_description_is_reported_at_once() -> None:
    with pytest.raises(ProfileOptionError) as info:
        get_profile("custom", websocket_path="ws", token={"path": "/t", "guest_id": "guestId", "tokn": "x"},
                    frames={"auth": {"t": "{tokn}"}, "ping": {"n": "{seq}"}, "message": {"id": "{seq}", "x": "{text}"},
                            "pong_ref": "id"},
                    match=[{"kind": "pongg", "when": {"type": "pong"}}, {"kind": "ack", "when": {}}])
    assert str(info.value).splitlines() == [
        'custom profile option websocket_path = "ws": expected a path starting with "/", e.g. "/api/v2/guest/websocket"',
        'custom profile option token.tokn = "x": unknown key; did you mean "token"?',
        'custom profile option token.token: missing; expected the JSON path of the token in the answer, e.g. token = "token"',
        'custom profile option frames.pong_ref = "id": unknown key; did you mean "ping_ref"?',
        'custom profile option frames.auth.t = "{tokn}": unknown placeholder {tokn} here; known here: '
        '{guestId}, {token}, {id}, {ts_ms}',
        'custom profile option frames.ping_ref: missing; expected the field of frames.ping that its answer carries '
        'back, e.g. ping_ref = "id"',
        'custom profile option match[0].kind = "pongg": expected one of auth_ok, auth_refused, pong, ack, '
        'agent_message, error, rate_limited, session_expired, session_ended, ignored',
        'custom profile option match[1].when = {}: expected a non-empty table of field = value, e.g. {type = "pong"}',
        'custom profile option match[1].ref: missing; expected for kind = "ack", the path of the id its answer '
        'carries back, e.g. ref = "id"',
    ]


def test_a_description_without_matchers_for_what_it_sends_is_refused() -> None:
    with pytest.raises(ProfileOptionError) as info:
        get_profile("custom", websocket_path="/ws", frames={"auth": {"a": 1}, "ping": {"id": "{seq}"}},
                    match=[{"kind": "auth_ok", "when": {"ok": True}}])
    assert str(info.value).splitlines() == [
        "custom profile option frames.message: missing; expected a template (or a hook that has message_frame)",
        'custom profile option match: missing; expected a matcher with kind = "pong": without it every ping '
        "would count as a missed pong",
        'custom profile option match: missing; expected a matcher with kind = "ack": without it no message '
        "would ever be acknowledged",
    ]


def test_an_empty_description_says_what_is_needed() -> None:
    with pytest.raises(ProfileOptionError) as info:
        get_profile("custom")
    assert [k for k, _v, _e in info.value.problems] == ["frames.auth", "frames.ping", "frames.message", "match",
                                                         "websocket_path"]


# --- hooks -------------------------------------------------------------------------------------------------


class SigningHook:
    """Adds a signature to the template's auth frame (what templates cannot compute)."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def auth_frame(self, grant: TokenGrant, style: str = "normal") -> bytes | None:
        frame = self.base.auth_frame(grant, style)
        if frame is None:
            return None
        data = orjson.loads(frame)
        data["sig"] = f"{len(grant.token)}:{grant.guest_id[::-1]}"
        return orjson.dumps(data)


class ClassifyEverything:
    """Replaces the matchers altogether: then the file needs none."""

    min_keepalive_s = 45.0

    def __init__(self, base: Any) -> None:
        self.base = base

    def classify(self, data: bytes | str) -> Any:
        from loadkit.protocol.base import ServerEvent

        return ServerEvent(E.IGNORED, detail="hooked")


def make_hook(base: Any) -> SigningHook:  # a function works as well as a class
    return SigningHook(base)


def test_a_hook_replaces_one_method_and_starts_from_the_templates(seed_options: dict[str, Any]) -> None:
    for target in (f"{__name__}:SigningHook", f"{__name__}:make_hook"):
        p = get_profile("custom", **seed_options, hook=target)
        assert decode(p.auth_frame(GRANT)) == {"command": "auth", "guestId": "guest-1", "token": "tok/en+1",
                                               "version": "1.0", "sig": "8:1-tseug"}
        assert decode(p.ping_frame(1, GRANT)[0]) == {"type": "ping", "id": 1}  # the rest is the template's
        assert p.classify(b'{"type":"pong","id":1}').kind is E.PONG


def test_a_hook_with_classify_makes_the_matchers_optional_and_may_set_the_keepalive_floor() -> None:
    p = get_profile("custom", websocket_path="/ws", frames={"auth": {"a": 1}, "ping": {"id": "{seq}"},
                                                            "message": {"id": "{seq}"}},
                    hook=f"{__name__}:ClassifyEverything")
    assert p.classify(b"{}").detail == "hooked" and p.min_keepalive_s == 45.0
    from loadkit.errors import ConfigError
    from loadkit.protocol.base import check_keepalive

    with pytest.raises(ConfigError, match="minimum of 45 s"):
        check_keepalive(p, 30)


@pytest.mark.parametrize("hook, expected", [
    ("no_colon", 'expected "package.module:Name", a class or function called with the template profile'),
    ("loadkit_no_such_module:X", "expected an importable module: cannot import 'loadkit_no_such_module'"),
    ("loadkit.protocol.custom:Nope", "expected a name defined in loadkit.protocol.custom: it has no 'Nope'"),
    ("loadkit.protocol.custom:KINDS", "expected a class or function (called with the template profile)"),
])
def test_a_bad_hook_is_one_line_naming_it(seed_options: dict[str, Any], hook: str, expected: str) -> None:
    with pytest.raises(ProfileOptionError) as info:
        get_profile("custom", **seed_options, hook=hook)
    assert str(info.value).startswith(f'custom profile option hook = "{hook}": {expected}')


# --- end to end: the seed thread's variant against the gateway --------------------------------------------

SETTINGS = HarnessSettings(
    session_seconds=(1.0, 1.3), keepalive_s=0.3, pong_timeout_s=2.0, message_interval=(0.2, 0.4),
    pause_between=(0.0, 0.0), connect_timeout_s=5.0, auth_timeout_s=3.0, close_timeout_s=2.0,
    reconnect=False, reconnect_max_attempts=0, survival_marks=(1,),
)


@pytest.fixture
def gateway() -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def start(**settings: Any) -> GatewayProcess:
        gw = GatewayProcess(settings={"agent_think_s": "0.01,0.03", **settings}, seed=5)
        started.append(gw)
        gw.start()
        return gw

    try:
        yield start
    finally:
        for gw in started:
            gw.stop()


def run_guests(url: str, profile: Any, names: list[str]) -> tuple[Recorder, list[str]]:
    transport = GeventTransport(open_timeout=5, close_timeout=2)
    rec, live, outcomes = Recorder(SETTINGS.survival_marks), LiveSessions(), []

    def guest(number: int, name: str) -> None:
        driver = SessionDriver(transport, profile, rec, SETTINGS, url, live, rng=random.Random(number))
        outcomes.append((number, driver.run_guest(number, behaviour(name)).outcome.value))

    # libev caches the loop's clock: after other tests ran for a while without
    # this process's hub, a 30 s timer measured from that stale "now" expires at once.
    gevent.get_hub().loop.update_now()
    jobs = [gevent.spawn(guest, i, name) for i, name in enumerate(names)]
    gevent.joinall(jobs, timeout=30, raise_error=True)
    transport.close()
    assert live.open == 0
    return rec, [o for _n, o in sorted(outcomes)]


@pytest.mark.timeout(60)
def test_the_seed_variant_runs_end_to_end_against_a_gateway_that_expects_it(gateway: Any, seed: Any) -> None:
    gw = gateway(auth_frame="command")
    rec, outcomes = run_guests(gw.url, seed, ["normal"] * 4 + ["wrong_case", "bad_token"])
    stats = settled_stats(gw)
    assert outcomes == ["closed_normally"] * 4 + ["auth_refused"] * 2
    for phase in ("token", "connect", "auth", "ping", "message", "reply"):
        assert rec.latency[phase].count > 0, phase
    assert rec.missed_pongs == 0 and not rec.errors and not rec.bad_frames
    # ground truth: the same sessions, the same closes
    assert stats["tokens"]["issued"] == rec.latency["token"].count == 6
    assert (stats["sessions"]["opened"], stats["sessions"]["authenticated"]) == (rec.started, rec.authenticated) == (6, 4)
    assert stats["frames_sent"]["pong"] == rec.latency["ping"].count
    assert stats["frames_sent"]["ack"] == stats["frames_received"]["message"]
    closes = {(c["code"], c["initiator"], c["phase"]): c["count"] for c in stats["closes"]}
    assert closes == {(1000, "client", "authenticated"): 4, (1000, "server", "pre_auth"): 2}
    harness = {(code, initiator): n for (_p, code, _r, initiator), n in rec.close_codes.items()}
    assert harness == {(1000, "client"): 4, (1000, "server"): 2}


@pytest.mark.timeout(60)
def test_the_seed_variant_against_the_contracts_gateway_is_the_seed_threads_symptom(gateway: Any, seed: Any) -> None:
    gw = gateway()  # auth_frame = "type": {"command":"auth"} is not an auth frame
    rec, outcomes = run_guests(gw.url, seed, ["normal"] * 3)
    assert outcomes == ["auth_refused"] * 3
    assert {(code, reason, initiator) for (_p, code, reason, initiator) in rec.close_codes} == {(1000, "", "server")}
    assert settled_stats(gw)["sessions"]["authenticated"] == 0
