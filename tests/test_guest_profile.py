"""The guest profile: frames out equal guest-protocol.md, frames in classify to the right event.

The reference gateway builds its WebSocket frames as dict literals inside its
session coroutine (no encoder to call), so server frames here are the literal
frames of the protocol doc, plus the gateway's extra ``id`` on error frames.
The token step round-trips through the gateway's own HTTP encoder and signer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from loadkit.protocol.base import AUTH_STYLES, EventKind, ServerEvent, TokenGrant, TokenRequest
from loadkit.protocol.guest import GuestProfile

GUEST_ID = "5b0c7e52-3c1f-4b8e-9a57-1f0e2d3c4b5a"
TOKEN = "eyJnIjoiNWIwYyJ9.c2lnbmF0dXJl"


@pytest.fixture
def profile() -> GuestProfile:
    return GuestProfile()


@pytest.fixture
def grant() -> TokenGrant:
    return TokenGrant(GUEST_ID, TOKEN, 1795823231)


def json_of(frame: bytes | None) -> Any:
    assert isinstance(frame, bytes)
    return orjson.loads(frame)


# -- frames out ---------------------------------------------------------------------------


def test_the_normal_auth_frame_is_the_protocol_auth_frame(profile: GuestProfile, grant: TokenGrant) -> None:
    assert json_of(profile.auth_frame(grant)) == {"type": "auth", "guestId": GUEST_ID, "token": TOKEN}
    assert profile.auth_frame(grant, "normal") == profile.auth_frame(grant)


def test_the_wrong_case_auth_frame_says_Auth(profile: GuestProfile, grant: TokenGrant) -> None:
    assert json_of(profile.auth_frame(grant, "wrong_case")) == {"type": "Auth", "guestId": GUEST_ID, "token": TOKEN}


def test_the_command_auth_frame_is_the_seed_threads_variant(profile: GuestProfile, grant: TokenGrant) -> None:
    assert json_of(profile.auth_frame(grant, "command")) == {
        "command": "auth", "guestId": GUEST_ID, "token": TOKEN, "version": "1.0"}


def test_the_bad_token_auth_frame_is_well_formed_but_carries_another_token_of_the_same_length(
        profile: GuestProfile, grant: TokenGrant) -> None:
    frame = json_of(profile.auth_frame(grant, "bad_token"))
    assert set(frame) == {"type", "guestId", "token"}
    assert frame["type"] == "auth" and frame["guestId"] == GUEST_ID
    assert frame["token"] != TOKEN and len(frame["token"]) == len(TOKEN)


def test_the_none_auth_style_sends_no_auth_frame(profile: GuestProfile, grant: TokenGrant) -> None:
    assert profile.auth_frame(grant, "none") is None


def test_every_declared_auth_style_is_supported(profile: GuestProfile, grant: TokenGrant) -> None:
    frames = {style: profile.auth_frame(grant, style) for style in AUTH_STYLES}
    assert len({f for f in frames.values()}) == len(AUTH_STYLES)


def test_an_auth_frame_escapes_whatever_the_token_holds(profile: GuestProfile) -> None:
    odd = TokenGrant('guest "1"', 'to"k\\en\n\u2603')
    assert json_of(profile.auth_frame(odd)) == {"type": "auth", "guestId": 'guest "1"', "token": 'to"k\\en\n\u2603'}


def test_the_ping_frame_is_the_protocol_ping_and_its_reference_is_its_id(
        profile: GuestProfile, grant: TokenGrant) -> None:
    frame, ref = profile.ping_frame(7, grant)
    assert frame == b'{"type":"ping","id":7}'
    assert json_of(frame) == {"type": "ping", "id": 7} and ref == 7


def test_the_message_frame_is_the_protocol_message_and_its_reference_is_its_id(
        profile: GuestProfile, grant: TokenGrant) -> None:
    frame, ref = profile.message_frame(3, "hello", grant)
    assert json_of(frame) == {"type": "message", "id": "c-3", "text": "hello"}
    assert ref == "c-3"


def test_a_message_text_is_escaped_and_kept_whole(profile: GuestProfile, grant: TokenGrant) -> None:
    text = 'h\u00e9llo "agent" \\ \u2603\n' + "x" * 3980
    frame, _ = profile.message_frame(4, text, grant)
    assert json_of(frame)["text"] == text
    frame.decode("utf-8")


def test_the_guest_profile_sends_no_goodbye_frames_and_no_extra_handshake_headers(
        profile: GuestProfile, grant: TokenGrant) -> None:
    assert profile.goodbye_frames(grant) == []
    assert profile.handshake_headers("http://127.0.0.1:8080") == []


# -- frames in ------------------------------------------------------------------------------

#: The server → client table of guest-protocol.md, and the event each must give.
SERVER_FRAMES: list[tuple[dict[str, Any], ServerEvent]] = [
    ({"type": "auth_ok", "guestId": GUEST_ID, "sessionId": "s-1", "idleTimeout": 30},
     ServerEvent(EventKind.AUTH_OK, "s-1",
                 fields={"type": "auth_ok", "guestId": GUEST_ID, "sessionId": "s-1", "idleTimeout": 30})),
    ({"type": "pong", "id": 7}, ServerEvent(EventKind.PONG, 7)),
    ({"type": "ack", "id": "c-17-3", "ts": 1795823231123}, ServerEvent(EventKind.ACK, "c-17-3")),
    ({"type": "message", "from": "agent", "id": "a-99", "text": "\u2026", "replyTo": "c-17-3"},
     ServerEvent(EventKind.AGENT_MESSAGE, "c-17-3")),
    ({"type": "error", "code": 4029, "message": "rate limited", "retryAfter": 1},
     ServerEvent(EventKind.RATE_LIMITED, code=4029, retry_after=1.0)),
    ({"type": "error", "code": 4029, "message": "rate limited", "retryAfter": 2.5},
     ServerEvent(EventKind.RATE_LIMITED, code=4029, retry_after=2.5)),
    ({"type": "error", "code": 4029, "message": "rate limited"},
     ServerEvent(EventKind.RATE_LIMITED, code=4029, retry_after=None)),
    ({"type": "error", "code": 4011, "message": "message too long"},
     ServerEvent(EventKind.ERROR, code=4011, detail="message too long")),
    ({"type": "error", "code": 4400, "message": "malformed frame"},
     ServerEvent(EventKind.ERROR, code=4400, detail="malformed frame")),
    ({"type": "error", "code": 4001, "message": "invalid token"},
     ServerEvent(EventKind.AUTH_REFUSED, code=4001, detail="invalid token")),
    ({"type": "error", "code": 4003, "message": "token lacks the guest:chat scope"},
     ServerEvent(EventKind.AUTH_REFUSED, code=4003, detail="token lacks the guest:chat scope")),
    ({"type": "session_expired"}, ServerEvent(EventKind.SESSION_EXPIRED)),
]


@pytest.mark.parametrize(("frame", "event"), SERVER_FRAMES, ids=[
    f"{f['type']}-{f.get('code', '')}-{i}" for i, (f, _) in enumerate(SERVER_FRAMES)])
def test_every_server_frame_of_the_protocol_classifies_to_its_event(
        profile: GuestProfile, frame: dict[str, Any], event: ServerEvent) -> None:
    data = orjson.dumps(frame)
    assert profile.classify(data) == event
    assert profile.classify(data.decode()) == event  # text frames arrive as str


@pytest.mark.parametrize(("data", "detail", "bad"), [
    (b"not json", "not JSON", "not_json"),
    (b"", "not JSON", "not_json"),
    (b"\xff\xfe{}", "not JSON", "not_json"),
    (b'{"type":"ack"', "not JSON", "not_json"),
    (b'[{"type":"ack","id":"c-1"}]', "not a JSON object", "not_object"),
    (b'"ack"', "not a JSON object", "not_object"),
    (b"42", "not a JSON object", "not_object"),
    (b"null", "not a JSON object", "not_object"),
    (b"[" * 2000 + b"]" * 2000, "nested too deep", "too_deep"),
])
def test_what_is_not_a_json_object_is_malformed(profile: GuestProfile, data: bytes, detail: str, bad: str) -> None:
    assert profile.classify(data) == ServerEvent(EventKind.MALFORMED, detail=detail, bad=bad)


@pytest.mark.parametrize(("frame", "detail"), [
    ({"type": "auth_ok"}, "auth_ok without guestId, sessionId, idleTimeout"),
    ({"type": "auth_ok", "guestId": GUEST_ID, "sessionId": 7, "idleTimeout": 30}, "auth_ok without sessionId"),
    ({"type": "auth_ok", "guestId": GUEST_ID, "sessionId": "s", "idleTimeout": True}, "auth_ok without idleTimeout"),
    ({"type": "pong"}, "pong without id"),
    ({"type": "ack", "id": "c-1"}, "ack without ts"),
    ({"type": "ack", "ts": 1}, "ack without id"),
    ({"type": "message", "from": "agent", "id": "a-1"}, "message without text"),
    ({"type": "error", "code": "4400", "message": "code as text"}, "error without code"),
    ({"type": "error", "code": 4400}, "error without message"),
])
def test_a_known_frame_without_its_fields_is_a_bad_frame(profile: GuestProfile, frame: dict[str, Any],
                                                         detail: str) -> None:
    """guest-protocol.md §2 names each frame's fields; one without them is not that frame."""
    assert profile.classify(orjson.dumps(frame)) == ServerEvent(EventKind.MALFORMED, detail=detail,
                                                                bad="missing_fields")


@pytest.mark.parametrize(("data", "detail"), [
    (b'{"type":"Auth_ok","sessionId":"s"}', "type='Auth_ok'"),
    (b'{"type":"typing"}', "type='typing'"),
    (b'{"id":7}', "type=None"),
    (b'{"type":7}', "type=7"),
    (b"{}", "type=None"),
])
def test_a_json_object_of_no_known_type_is_unknown(profile: GuestProfile, data: bytes, detail: str) -> None:
    assert profile.classify(data) == ServerEvent(EventKind.UNKNOWN, detail=detail, bad="unknown_type")


@pytest.mark.parametrize("retry", ["soon", [1], {"s": 1}])
def test_a_rate_limit_with_a_nonsense_retry_after_is_still_an_event(profile: GuestProfile, retry: Any) -> None:
    data = orjson.dumps({"type": "error", "code": 4029, "message": "rate limited", "retryAfter": retry})
    event = profile.classify(data)
    assert event.kind is EventKind.RATE_LIMITED and event.retry_after is None


def test_a_rate_limit_refers_to_the_refused_message_by_the_id_the_gateway_sends(profile: GuestProfile) -> None:
    # what loadkit/gateway/server.py _on_message sends: _send_error(4029, ..., retryAfter=retry, id=message_id)
    data = orjson.dumps({"type": "error", "code": 4029, "message": "rate limited", "retryAfter": 1, "id": "c-3"})
    assert profile.classify(data).ref == "c-3"


# -- round trips: what we send, answered as the gateway answers ---------------------------


def test_a_pong_to_our_ping_refers_to_the_ping(profile: GuestProfile, grant: TokenGrant) -> None:
    frame, ref = profile.ping_frame(41, grant)
    pong = orjson.dumps({"type": "pong", "id": json_of(frame)["id"]})
    assert profile.classify(pong) == ServerEvent(EventKind.PONG, ref)


def test_an_ack_and_an_agent_reply_to_our_message_refer_to_the_message(
        profile: GuestProfile, grant: TokenGrant) -> None:
    frame, ref = profile.message_frame(17, "hello", grant)
    sent = json_of(frame)
    ack = orjson.dumps({"type": "ack", "id": sent["id"], "ts": 1795823231123})
    reply = orjson.dumps({"type": "message", "from": "agent", "id": "a-1",
                          "text": f"Agent reply to: {sent['text']}", "replyTo": sent["id"]})
    assert profile.classify(ack).ref == ref
    assert profile.classify(reply) == ServerEvent(EventKind.AGENT_MESSAGE, ref)


def _gateway_token_response(request_body: bytes) -> tuple[bytes, Any]:
    """The token response of the reference gateway, as bytes on the wire, and its signer."""
    from loadkit.gateway.server import TOKEN_PATH, Gateway
    from loadkit.gateway.settings import GatewaySettings

    async def issue() -> tuple[bytes, Any]:
        gateway = Gateway(GatewaySettings(seed=1, secret="test-secret"))
        port = await gateway.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (TOKEN_PATH.encode(), len(request_body), request_body))
            wire = await reader.read()  # the gateway closes after its answer
            writer.close()
        finally:
            await gateway.shutdown()
        assert wire.startswith(b"HTTP/1.1 201 ")
        return wire, gateway.signer

    return asyncio.run(issue())


def test_the_token_request_is_accepted_and_the_gateways_grant_authenticates(
        profile: GuestProfile) -> None:
    request = profile.token_request("http://127.0.0.1:8080", 17)
    wire, signer = _gateway_token_response(request.body)
    head, _, body = wire.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    grant = profile.token_grant(201, body, 17)
    sent = orjson.loads(body)
    assert (grant.guest_id, grant.token, grant.expires_at) == (sent["guestId"], sent["token"], sent["expiresAt"])
    auth = json_of(profile.auth_frame(grant))
    assert signer.verify(auth["token"], auth["guestId"], time.time()).ok
    bad = json_of(profile.auth_frame(grant, "bad_token"))
    assert not signer.verify(bad["token"], bad["guestId"], time.time()).ok


# -- token ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "url"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v2/guests"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/v2/guests"),
    ("https://chat.example.com/edge/", "https://chat.example.com/edge/api/v2/guests"),
    ("ws://127.0.0.1:8080", "http://127.0.0.1:8080/api/v2/guests"),
    ("wss://chat.example.com", "https://chat.example.com/api/v2/guests"),
])
def test_the_token_request_posts_a_display_name_as_json(profile: GuestProfile, base: str, url: str) -> None:
    request = profile.token_request(base, 17)
    assert request == TokenRequest("POST", url, request.body, (("Content-Type", "application/json"),))
    assert orjson.loads(request.body) == {"displayName": "Load Guest 17"}


def test_the_token_grant_of_the_protocol_example(profile: GuestProfile) -> None:
    body = orjson.dumps({"guestId": GUEST_ID, "token": TOKEN, "expiresAt": 1795823231, "scopes": ["guest:chat"]})
    grant = profile.token_grant(201, body, 17)
    assert (grant.guest_id, grant.token, grant.expires_at) == (GUEST_ID, TOKEN, 1795823231)


def test_a_token_grant_without_expiry_never_expires(profile: GuestProfile) -> None:
    grant = profile.token_grant(201, b'{"guestId":"g","token":"t"}', 1)
    assert grant.expires_at is None


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'["g","t"]', b"{}", b'{"guestId":"g"}', b'{"token":"t"}', b"null", b'"g"', b"42",
    b'{"error":"draining","message":"gateway is shutting down"}',
])
def test_a_malformed_token_response_raises_value_error(profile: GuestProfile, body: bytes) -> None:
    with pytest.raises(ValueError, match=r"^malformed token response: \w+$"):
        profile.token_grant(201, body, 1)


@pytest.mark.parametrize("body", [b'{"guestId":null,"token":null}', b'{"guestId":"g","token":{"v":1}}'])
def test_a_token_response_with_non_string_ids_raises_value_error(profile: GuestProfile, body: bytes) -> None:
    with pytest.raises(ValueError):
        profile.token_grant(201, body, 1)


@pytest.mark.parametrize("expires", ['"soon"', "[1]"])
def test_a_token_response_with_a_non_numeric_expiry_raises_value_error(profile: GuestProfile, expires: str) -> None:
    with pytest.raises(ValueError):
        profile.token_grant(201, b'{"guestId":"g","token":"t","expiresAt":%s}' % expires.encode(), 1)


# -- websocket url -----------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "url"), [
    ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/api/v2/guest/websocket"),
    ("https://chat.example.com", "wss://chat.example.com/api/v2/guest/websocket"),
    ("https://chat.example.com:8443/edge", "wss://chat.example.com:8443/edge/api/v2/guest/websocket"),
    ("http://127.0.0.1:8080/edge/", "ws://127.0.0.1:8080/edge/api/v2/guest/websocket"),
    ("ws://127.0.0.1:8080", "ws://127.0.0.1:8080/api/v2/guest/websocket"),
    ("wss://chat.example.com/", "wss://chat.example.com/api/v2/guest/websocket"),
])
def test_the_websocket_url_is_ws_or_wss_at_the_protocol_path(
        profile: GuestProfile, grant: TokenGrant, base: str, url: str) -> None:
    assert profile.websocket_url(base, grant) == url


def test_the_paths_are_settings_of_the_profile(grant: TokenGrant) -> None:
    custom = GuestProfile(token_path="/guests", websocket_path="/ws")
    assert custom.websocket_url("https://h", grant) == "wss://h/ws"
    assert custom.token_request("https://h", 1).url == "https://h/guests"


# -- secrets ---------------------------------------------------------------------------------


def test_a_token_grant_never_shows_its_token(grant: TokenGrant) -> None:
    for text in (repr(grant), str(grant), f"{grant}", repr([grant]), repr({"g": grant})):
        assert TOKEN not in text and "<hidden>" in text and GUEST_ID in text
