"""The webmessaging profile, pure: frames out as the doc writes them, frames in as the doc's kinds.

Every server frame below is copied from ``webmessaging-protocol.md``; every
client frame is compared with the doc's shape. Round trips: what a frame
sends out (a ``tracingId``) comes back in the server's answer and is
classified to the same ``ref``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import pytest

from loadkit.errors import ConfigError
from loadkit.protocol import get_profile
from loadkit.protocol.base import (
    AUTH_STYLES,
    EventKind,
    ProfileOptionError,
    TokenGrant,
    auth_styles,
    check_keepalive,
)
from loadkit.protocol.webmessaging import HEALTH_CHECK_ID, WebMessagingProfile

E = EventKind
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DEPLOYMENT = "8ef2b1a0-1111-4c4c-9a9a-000000000001"


@pytest.fixture
def wm() -> WebMessagingProfile:
    return get_profile("webmessaging", deployment_id=DEPLOYMENT)  # type: ignore[return-value]


@pytest.fixture
def grant(wm: WebMessagingProfile) -> TokenGrant:
    return wm.token_grant(None, b"", 1)


def decode(frame: bytes | None) -> dict[str, Any]:
    assert frame is not None
    return orjson.loads(frame)  # type: ignore[no-any-return]


# --- token, URL, headers -----------------------------------------------------------------


def test_the_token_step_is_local_and_makes_lower_case_uuids(wm: WebMessagingProfile) -> None:
    assert wm.token_request("https://webmessaging.mypurecloud.com", 1) is None
    a, b = wm.token_grant(None, b"", 1), wm.token_grant(None, b"", 1)
    assert UUID.match(a.token) and UUID.match(a.guest_id) and a.token != b.token
    assert a.expires_at is None  # a reconnect may always reuse it


def test_the_grant_and_the_profile_never_show_their_secrets(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    assert grant.token not in repr(grant) and "<hidden>" in repr(grant)
    assert DEPLOYMENT not in repr(wm)


@pytest.mark.parametrize("base, expected", [
    ("https://webmessaging.mypurecloud.com", f"wss://webmessaging.mypurecloud.com/v1?deploymentId={DEPLOYMENT}"),
    ("http://127.0.0.1:8080", f"ws://127.0.0.1:8080/v1?deploymentId={DEPLOYMENT}"),
])
def test_the_url_carries_the_deployment(wm: WebMessagingProfile, grant: TokenGrant, base: str, expected: str) -> None:
    assert wm.websocket_url(base, grant) == expected


def test_the_application_name_is_quoted_into_the_url(grant: TokenGrant) -> None:
    wm = get_profile("webmessaging", deployment_id="d", application="load kit/1")
    assert wm.websocket_url("https://x", grant) == "wss://x/v1?deploymentId=d&application=load%20kit%2F1"


def test_the_origin_header_defaults_to_the_target_and_can_be_set(grant: TokenGrant) -> None:
    assert get_profile("webmessaging", deployment_id="d").handshake_headers("wss://h.example:443") == [
        ("Origin", "https://h.example:443")]
    wm = get_profile("webmessaging", deployment_id="d", origin="https://www.shop.example/")
    assert wm.handshake_headers("https://x") == [("Origin", "https://www.shop.example")]


# --- client frames: the doc's shapes ---------------------------------------------------------


def test_configure_session_is_the_docs_frame(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    assert decode(wm.auth_frame(grant)) == {
        "action": "configureSession", "deploymentId": DEPLOYMENT, "token": grant.token, "startNew": False,
        "journeyContext": {"customer": {"id": grant.guest_id, "idType": "cookie"},
                           "customerSession": {"id": "", "type": "web"}}}


def test_a_reconnect_sends_the_same_token(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    assert decode(wm.auth_frame(grant))["token"] == decode(wm.auth_frame(grant))["token"] == grant.token


def test_every_auth_style_is_supported_and_each_mistake_is_recognisably_wrong(
        wm: WebMessagingProfile, grant: TokenGrant) -> None:
    assert auth_styles(wm) == AUTH_STYLES
    assert wm.auth_frame(grant, "none") is None
    assert decode(wm.auth_frame(grant, "wrong_case"))["action"] == "ConfigureSession"
    command = decode(wm.auth_frame(grant, "command"))
    assert command["command"] == "configureSession" and "action" not in command
    assert len(decode(wm.auth_frame(grant, "bad_token"))["token"]) == 2049  # over the 2048 the service takes


def test_echo_is_the_docs_keepalive_with_the_health_check_id(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    frame, ref = wm.ping_frame(7, grant)
    assert decode(frame) == {"action": "echo", "token": grant.token, "tracingId": ref,
                             "message": {"type": "Text", "text": "ping",
                                         "metadata": {"customMessageId": HEALTH_CHECK_ID}}}


def test_on_message_carries_a_fresh_uuid_tracing_id(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    frame, ref = wm.message_frame(3, "Hello", grant)
    assert decode(frame) == {"action": "onMessage", "token": grant.token, "tracingId": ref,
                             "message": {"type": "Text", "text": "Hello"}}
    assert UUID.match(ref) and ref != wm.message_frame(3, "Hello", grant)[1]


@pytest.mark.parametrize("goodbye, actions", [
    ("both", ["Clear", "closeSession"]), ("clear", ["Clear"]),
    ("close_session", ["closeSession"]), ("none", []),
])
def test_goodbye_is_presence_clear_and_or_close_session(grant: TokenGrant, goodbye: str, actions: list[str]) -> None:
    wm = get_profile("webmessaging", deployment_id="d", goodbye=goodbye)
    frames = [decode(f) for f in wm.goodbye_frames(grant)]
    seen = [f["message"]["events"][0]["presence"]["type"] if f["action"] == "onMessage" else f["action"]
            for f in frames]
    assert seen == actions
    for f in frames:
        assert f["token"] == grant.token
        if f["action"] == "closeSession":
            # with a tracingId, as the SDKs send it, so that its refusal can be told apart
            assert UUID.match(f.pop("tracingId"))
            assert f == {"action": "closeSession", "token": grant.token, "closeAllConnections": True}
        else:
            assert f["message"] == {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Clear"}}]}


# --- server frames from the doc ----------------------------------------------------------------

DOC_FRAMES: list[tuple[str, EventKind, dict[str, Any]]] = [
    ('{"type":"response","class":"SessionResponse","code":200,"body":{"connected":true,"newSession":true,'
     '"readOnly":false,"maxCustomDataBytes":2048}}', E.AUTH_OK, {}),
    ('{"type":"message","class":"StructuredMessage","code":200,"body":{"type":"Text","text":"Hello",'
     '"direction":"Inbound","id":"m1","channel":{"time":"2026-01-01T00:00:00.000Z"}},"tracingId":"t-1"}',
     E.ACK, {"ref": "t-1"}),
    ('{"type":"message","class":"StructuredMessage","code":200,"body":{"type":"Text","text":"Hi, how can I help?",'
     '"direction":"Outbound","id":"m2","channel":{"time":"2026-01-01T00:00:01.000Z","type":"Private"},'
     '"originatingEntity":"Bot"}}', E.AGENT_MESSAGE, {"ref": None}),
    ('{"type":"response","class":"StructuredMessage","code":200,"body":{"text":"ping","type":"Text",'
     '"direction":"Inbound","id":"e1"},"tracingId":"echo-4"}', E.PONG, {"ref": "echo-4"}),
    ('{"type":"response","class":"TooManyRequestsErrorMessage","code":429,"body":{"retryAfter":3,'
     '"errorCode":4029,"errorMessage":"Message rate too high for this session"}}',
     E.RATE_LIMITED, {"code": 4029, "retry_after": 3.0}),
    ('{"type":"response","class":"string","code":400,"body":"Deployment not found"}',
     E.ERROR, {"code": 400, "detail": "Deployment not found"}),
    ('{"type":"response","class":"string","code":4011,"body":"message too long"}',
     E.ERROR, {"code": 4011, "detail": "message too long"}),
    ('{"type":"response","class":"SessionExpiredEvent","code":200,"body":{}}', E.SESSION_EXPIRED, {}),
    ('{"type":"message","class":"ConnectionClosedEvent","code":200,"body":{}}',
     E.SESSION_ENDED, {"detail": "ConnectionClosedEvent"}),
    ('{"type":"message","class":"SessionClearedEvent","code":200,"body":{}}',
     E.SESSION_ENDED, {"detail": "SessionClearedEvent"}),
    ('{"type":"response","class":"JwtResponse","code":200,"body":{"jwt":"x","exp":1795823291}}', E.IGNORED, {}),
]


@pytest.mark.parametrize("raw, kind, expected", DOC_FRAMES, ids=[f"{k.name}-{i}" for i, (_r, k, _e) in enumerate(DOC_FRAMES)])
def test_each_server_frame_of_the_doc_is_classified(wm: WebMessagingProfile, raw: str, kind: EventKind,
                                                    expected: dict[str, Any]) -> None:
    ev = wm.classify(raw)
    assert ev.kind is kind
    for name, value in expected.items():
        assert getattr(ev, name) == value


def test_agent_messages_name_no_message_and_the_profile_says_so(wm: WebMessagingProfile) -> None:
    from loadkit.protocol.base import reply_refs

    assert reply_refs(wm) is False and reply_refs(get_profile("guest")) is True


def test_new_session_is_exposed_in_the_auth_ok_fields(wm: WebMessagingProfile) -> None:
    resumed = wm.classify(b'{"type":"response","class":"SessionResponse","code":200,"body":{"connected":true,'
                          b'"newSession":false,"readOnly":false}}')
    assert resumed.kind is E.AUTH_OK and resumed.fields["newSession"] is False


def test_an_echo_reply_without_tracing_id_is_still_a_pong_by_its_health_check_id(wm: WebMessagingProfile) -> None:
    # Genesys's own test stub of an echo reply: metadata copied back, no tracingId.
    ev = wm.classify('{"type":"response","class":"StructuredMessage","code":200,"body":{"text":"ping","type":"Text",'
                     '"direction":"Inbound","id":"echo_id","metadata":{"customMessageId":"' + HEALTH_CHECK_ID + '"}}}')
    assert ev.kind is E.PONG


@pytest.mark.parametrize("raw, kind, code", [
    ('{"type":"response","class":"string","code":4006,"body":"session expired"}', E.SESSION_EXPIRED, 4006),
    ('{"type":"response","class":"string","code":4029,"body":"too fast"}', E.RATE_LIMITED, 4029),
    ('{"type":"response","class":"string","code":5000,"body":"Request failed."}', E.ERROR, 5000),
    ('{"type":"response","class":"string","code":401,"body":"User is unauthorized"}', E.ERROR, 401),
    ('{"type":"message","class":"StructuredMessage","code":200,"body":{"type":"Event","direction":"Outbound",'
     '"events":[{"eventType":"Typing"}]}}', E.IGNORED, None),
    ('{"type":"response","class":"SessionResponse","code":200,"body":{"connected":false,"newSession":false}}',
     E.SESSION_ENDED, 200),
    ('{"type":"message","class":"SomethingNew","code":200,"body":{}}', E.UNKNOWN, None),
    ('[1,2]', E.MALFORMED, None),
    ('not json', E.MALFORMED, None),
])
def test_other_codes_and_shapes(wm: WebMessagingProfile, raw: str, kind: EventKind, code: int | None) -> None:
    ev = wm.classify(raw)
    assert ev.kind is kind and ev.code == code


# --- round trips: out, through a server answer built as the doc says, back in ----------------------


def test_an_echo_round_trips_to_a_pong_with_its_ref(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    frame, ref = wm.ping_frame(9, grant)
    sent = decode(frame)
    reply = {"type": "response", "class": "StructuredMessage", "code": 200, "tracingId": sent["tracingId"],
             "body": {"text": "ping", "type": "Text", "direction": "Inbound", "id": str(uuid.uuid4()),
                      "metadata": sent["message"]["metadata"]}}
    ev = wm.classify(orjson.dumps(reply))
    assert ev.kind is E.PONG and ev.ref == ref


def test_a_message_round_trips_to_an_ack_with_its_ref(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    frame, ref = wm.message_frame(10, "Hello", grant)
    sent = decode(frame)
    echo = {"type": "message", "class": "StructuredMessage", "code": 200, "tracingId": sent["tracingId"],
            "body": {"type": "Text", "text": sent["message"]["text"], "direction": "Inbound", "id": "x",
                     "channel": {"time": "2026-01-01T00:00:00.000Z"}}}
    ev = wm.classify(orjson.dumps(echo))
    assert ev.kind is E.ACK and ev.ref == ref


def test_a_refused_message_round_trips_to_rate_limited_with_its_ref(wm: WebMessagingProfile, grant: TokenGrant) -> None:
    _frame, ref = wm.message_frame(11, "Hello", grant)
    refusal = {"type": "response", "class": "TooManyRequestsErrorMessage", "code": 429, "tracingId": ref,
               "body": {"retryAfter": 2, "errorCode": 4029, "errorMessage": "Message rate too high for this session"}}
    ev = wm.classify(orjson.dumps(refusal))
    assert (ev.kind, ev.ref, ev.code, ev.retry_after) == (E.RATE_LIMITED, ref, 4029, 2.0)


def test_the_presence_echo_of_a_goodbye_is_ignored_not_an_ack_nor_an_agent_message(
        wm: WebMessagingProfile, grant: TokenGrant) -> None:
    # Our own event coming back answers no chat message: as an ack it would be unmatched.
    clear = decode(wm.goodbye_frames(grant)[0])
    echo = {"type": "message", "class": "StructuredMessage", "code": 200, "tracingId": clear["tracingId"],
            "body": {"type": "Event", "events": clear["message"]["events"], "direction": "Inbound", "id": "y"}}
    assert wm.classify(orjson.dumps(echo)).kind is E.IGNORED


# --- options and the keepalive floor ---------------------------------------------------------------


def test_keepalive_under_30_s_is_refused_naming_the_limit(wm: WebMessagingProfile) -> None:
    check_keepalive(wm, 30)
    check_keepalive(wm, 45)
    with pytest.raises(ConfigError) as info:
        check_keepalive(wm, 20)
    assert str(info.value) == (
        "keepalive interval 20 s is below the webmessaging minimum of 30 s (Genesys clients send at most "
        "2 echo frames per minute per connection): set --keepalive-interval 30 or more")


def test_the_guest_profile_has_no_keepalive_floor() -> None:
    check_keepalive(get_profile("guest"), 0.5)


def test_bad_options_are_all_reported_with_their_keys() -> None:
    with pytest.raises(ProfileOptionError) as info:
        get_profile("webmessaging", origin="www.shop.example", goodbye="wave", path="v1")
    assert [k for k, _v, _e in info.value.problems] == ["deployment_id", "origin", "path", "goodbye"]
    lines = str(info.value).splitlines()
    assert lines[0].startswith("webmessaging profile option deployment_id: missing; expected the Messenger deployment's id")
    assert lines[3] == 'webmessaging profile option goodbye = "wave": expected one of "both", "clear", "close_session", "none"'


def test_an_unknown_option_gets_a_did_you_mean() -> None:
    with pytest.raises(ProfileOptionError) as info:
        get_profile("webmessaging", deployment_id="d", deploymentId="d")
    assert str(info.value) == 'webmessaging profile option deploymentId = "d": unknown option; did you mean "deployment_id"?'
