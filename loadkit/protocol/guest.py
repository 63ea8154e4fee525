"""The ``guest`` profile: the protocol of ``shared/reference/guest-protocol.md``.

Frames are built with orjson straight to bytes and classified with a single
``orjson.loads`` and a dict lookup on ``type``: this runs for every frame of
every guest, so it does nothing else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from loadkit.protocol.base import (
    MISSING_FIELDS,
    UNKNOWN_TYPE,
    EventKind,
    Expects,
    ServerEvent,
    TokenGrant,
    TokenRequest,
    check_fatal,
    json_object,
    missing_fields,
)

TOKEN_PATH = "/api/v2/guests"
WEBSOCKET_PATH = "/api/v2/guest/websocket"

_E = EventKind

#: The fields each server frame must carry (guest-protocol.md §2), with their JSON types.
REQUIRED: dict[str, dict[str, str]] = {
    "auth_ok": {"guestId": "string", "sessionId": "string", "idleTimeout": "number"},
    "pong": {"id": "any"},
    "ack": {"id": "string", "ts": "number"},
    "message": {"id": "string", "text": "string"},
    "error": {"code": "integer", "message": "string"},
    "session_expired": {},
}


def ws_url_from_base(base_url: str, path: str, query: str = "") -> str:
    """``http(s)://host:port/prefix`` → ``ws(s)://host:port/prefix`` + path."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


def http_url_from_base(base_url: str, path: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


class GuestProfile:
    """Default profile: token over REST, ``auth`` frame, ``ping``/``pong``, ``message``/``ack``."""

    name = "guest"
    min_keepalive_s = 0.0
    #: Scopes a token needs (the gateway closes 4003 without them): for ``loadkit probe``.
    required_scopes = ("guest:chat",)

    def __init__(self, token_path: str = TOKEN_PATH, websocket_path: str = WEBSOCKET_PATH,
                 end_session_on: list[str] | None = None) -> None:
        self.token_path = token_path
        self.websocket_path = websocket_path
        #: Text frames only; pongs and acks must answer a ping or message of this session.
        self.expects = Expects(required=REQUIRED, fatal=check_fatal(end_session_on, self.name))

    # -- token ---------------------------------------------------------------

    def token_request(self, base_url: str, guest_no: int) -> TokenRequest:
        # What orjson.dumps({"displayName": ...}) gives, without its 4 KiB buffer: the body
        # lives through the token call, and such blocks fragment the heap (docs/capacity.md).
        body = b'{"displayName":"Load Guest %d"}' % guest_no
        return TokenRequest(
            "POST",
            http_url_from_base(base_url, self.token_path),
            body,
            (("Content-Type", "application/json"),),
        )

    def token_grant(self, status: int | None, body: bytes, guest_no: int) -> TokenGrant:
        try:
            data = orjson.loads(body)
            guest_id, token, expires = data["guestId"], data["token"], data.get("expiresAt")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed token response: {exc.__class__.__name__}") from None
        if not (isinstance(guest_id, str) and guest_id and isinstance(token, str) and token):
            raise ValueError("malformed token response: guestId and token must be non-empty strings")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float))):
            raise ValueError("malformed token response: expiresAt must be a number of seconds")
        scopes = data.get("scopes")
        listed = isinstance(scopes, list) and all(isinstance(x, str) for x in scopes)
        extra = {"scopes": tuple(scopes)} if listed else {}
        return TokenGrant(guest_id, token, expires, extra)

    # -- connection ----------------------------------------------------------

    def websocket_url(self, base_url: str, grant: TokenGrant) -> str:
        return ws_url_from_base(base_url, self.websocket_path)

    def handshake_headers(self, base_url: str) -> list[tuple[str, str]]:
        return []

    # -- frames out ----------------------------------------------------------

    def auth_frame(self, grant: TokenGrant, style: str = "normal") -> bytes | None:
        if style == "none":
            return None
        if style == "wrong_case":
            return orjson.dumps({"type": "Auth", "guestId": grant.guest_id, "token": grant.token})
        if style == "command":  # the variant suggested in the seed thread
            return orjson.dumps(
                {"command": "auth", "guestId": grant.guest_id, "token": grant.token, "version": "1.0"}
            )
        token = grant.token[:-4] + "XXXX" if style == "bad_token" else grant.token
        return orjson.dumps({"type": "auth", "guestId": grant.guest_id, "token": token})

    def ping_frame(self, seq: int, grant: TokenGrant) -> tuple[bytes, Any]:
        return b'{"type":"ping","id":%d}' % seq, seq

    def message_frame(self, seq: int, text: str, grant: TokenGrant) -> tuple[bytes, Any]:
        ref = f"c-{seq}"
        return orjson.dumps({"type": "message", "id": ref, "text": text}), ref

    def goodbye_frames(self, grant: TokenGrant) -> list[bytes]:
        return []

    # -- frames in -----------------------------------------------------------

    def classify(self, data: bytes | str) -> ServerEvent:
        obj = json_object(data)
        if isinstance(obj, ServerEvent):
            return obj  # MALFORMED
        kind = obj.get("type")
        if kind == "ack":  # nearly every frame of a chat: its two fields checked directly, as REQUIRED says
            ref, ts = obj.get("id"), obj.get("ts")
            if type(ref) is str and (type(ts) is float or type(ts) is int):
                return ServerEvent(_E.ACK, ref)
        required = REQUIRED.get(kind) if type(kind) is str else None
        if required is None:
            return ServerEvent(_E.UNKNOWN, detail="type=" + repr(kind)[:40], bad=UNKNOWN_TYPE)
        lacking = missing_fields(obj, required)
        if lacking:
            return ServerEvent(_E.MALFORMED, detail=f"{kind} without {lacking}", bad=MISSING_FIELDS)
        if kind == "ack":
            return ServerEvent(_E.ACK, obj["id"])
        if kind == "pong":
            return ServerEvent(_E.PONG, obj["id"])
        if kind == "message":
            return ServerEvent(_E.AGENT_MESSAGE, obj.get("replyTo"))
        if kind == "auth_ok":
            return ServerEvent(_E.AUTH_OK, obj["sessionId"], fields=obj)
        if kind == "error":
            code = obj["code"]
            if code == 4029:
                retry = obj.get("retryAfter")
                if isinstance(retry, bool) or not isinstance(retry, (int, float)) or retry <= 0:
                    retry = None
                return ServerEvent(_E.RATE_LIMITED, obj.get("id"), code=4029, retry_after=retry)
            if code in (4001, 4003):
                return ServerEvent(_E.AUTH_REFUSED, code=code, detail=str(obj.get("message", "")))
            return ServerEvent(_E.ERROR, code=code, detail=str(obj.get("message", "")))
        return ServerEvent(_E.SESSION_EXPIRED)
