"""The ``webmessaging`` profile: Genesys Cloud Web Messaging's guest WebSocket.

The wire contract is ``shared/reference/webmessaging-protocol.md``. What
differs from the ``guest`` profile, and how each difference maps onto the
driver's one lifecycle:

- **token**: there is no token call for an anonymous guest. The guest *makes*
  its token, a lower-case UUID that names its session across reconnects, so
  ``token_request`` returns ``None`` and ``token_grant`` generates it. A
  reconnect gets the same ``TokenGrant`` back from the driver (grants never
  expire here), so it resumes the session: the ``SessionResponse`` then says
  ``newSession: false``, exposed as ``ServerEvent.fields["newSession"]``.
- **connect**: ``ws(s)://HOST/v1?deploymentId=ID[&application=NAME]`` with an
  ``Origin`` header (a deployment that restricts domains answers 403).
- **auth**: ``configureSession`` → ``SessionResponse`` (``AUTH_OK``).
- **keepalive**: ``echo``, answered by an ``Inbound`` StructuredMessage
  *response*. Known clients send at most 2 per minute per connection, so the
  profile refuses an interval under ``min_keepalive_s`` (30 s).
- **message**: ``onMessage`` with a ``tracingId``; the server pushes the
  guest's own message back as an ``Inbound`` StructuredMessage with the same
  ``tracingId``: that echo is the ``ACK``.
- **goodbye**: Presence ``Clear`` (ends the conversation) and/or
  ``closeSession``, each awaited as the SDKs do (``SessionClearedEvent``;
  ``SessionResponse connected: false``), a refused Clear retried after its
  ``retryAfter``, all within ``goodbye_timeout`` seconds
  (``webmessaging_goodbye.py``); then the driver closes with 1000. A goodbye
  the target did not confirm ends as ``goodbye_incomplete``.

At most 3 sockets may share a token (a 4th gets the oldest a
``ConnectionClosedEvent``). The harness opens one socket per guest and each
guest has its own token, so it never comes near that limit; reconnects
reuse the token only after the previous socket is gone.

Like every profile this does no I/O. Frames are built with orjson and
classified with one ``orjson.loads`` and a dict lookup on ``class``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from loadkit.errors import ConfigError
from loadkit.protocol.base import (
    AUTH_STYLES,
    MISSING,
    MISSING_FIELDS,
    UNKNOWN_TYPE,
    EventKind,
    Expects,
    ProfileOptionError,
    ServerEvent,
    TokenGrant,
    TokenRequest,
    check_fatal,
    json_object,
    missing_fields,
)
from loadkit.protocol.guest import ws_url_from_base
from loadkit.protocol.webmessaging_goodbye import CLEAR, CLOSE_SESSION, SESSION_CLOSED, WebMessagingGoodbye

__all__ = ["WebMessagingProfile", "ECHO_PREFIX", "HEALTH_CHECK_ID", "GOODBYES", "GOODBYE_TIMEOUT_S",
           "MAX_TOKEN_CHARS"]

_E = EventKind

#: ``tracingId`` prefix of our echo frames: how an echo reply is told from a message echo.
ECHO_PREFIX = "echo-"
#: ``message.metadata.customMessageId`` that Genesys's own clients put on an echo
#: (base64 of "HealthCheckMessageId"); the server copies it into the reply.
HEALTH_CHECK_ID = "SGVhbHRoQ2hlY2tNZXNzYWdlSWQ="
#: Values of the ``goodbye`` option.
GOODBYES = ("both", "clear", "close_session", "none")
#: The steps of each ``goodbye``, in order.
_GOODBYE_STEPS = {"both": [CLEAR, CLOSE_SESSION], "clear": [CLEAR], "close_session": [CLOSE_SESSION], "none": []}
#: Default of ``goodbye_timeout``: how long the whole goodbye may wait for its answers.
#: Long enough for one refused Clear's ``retryAfter`` (1 s at 2 onMessage per second)
#: and a round trip, short enough not to hold a stopping run.
GOODBYE_TIMEOUT_S = 5.0
#: The longest token the service accepts.
MAX_TOKEN_CHARS = 2048
#: Application error codes that mean "your session is over".
_EXPIRED_CODES = frozenset({4006})
_RATE_CODES = frozenset({429, 4029})

#: Every server frame is this envelope (webmessaging-protocol.md, "Server → client").
ENVELOPE = {"type": "string", "class": "string", "code": "integer"}
#: What the body of each class must carry, beyond the envelope ("" : the body may be anything).
REQUIRED: dict[str, dict[str, str]] = {
    "envelope": ENVELOPE,
    "StructuredMessage": {"type": "string", "direction": "string"},
    "StructuredMessage Inbound": {"tracingId": "string"},  # the answer's ref: on the envelope
    "SessionResponse": {"connected": "boolean"},
    "TooManyRequestsErrorMessage": {"retryAfter": "number", "errorCode": "integer"},
    "SessionExpiredEvent": {},
    "ConnectionClosedEvent": {},
    "SessionClearedEvent": {},
}
_OBJECT_BODY = frozenset({"StructuredMessage", "SessionResponse", "TooManyRequestsErrorMessage",
                          "SessionExpiredEvent", "ConnectionClosedEvent", "SessionClearedEvent"})
_INBOUND = REQUIRED["StructuredMessage Inbound"]
_KNOWN_OTHER = frozenset({"JwtResponse", "string", "PresignedUrlResponse", "UploadSuccessEvent",
                          "GenerateUrlError", "LogoutEvent"})


class WebMessagingProfile:
    """Genesys Cloud Web Messaging, anonymous guest sessions."""

    name = "webmessaging"
    #: Never more than 2 echo frames per minute per connection.
    min_keepalive_s = 30.0
    auth_styles = AUTH_STYLES
    #: An Outbound message does not say which guest message it answers.
    reply_refs = False

    def __init__(self, *, deployment_id: Any = "", origin: Any = "", application: Any = "",
                 path: Any = "/v1", goodbye: Any = "both", close_all_connections: Any = True,
                 goodbye_timeout: Any = GOODBYE_TIMEOUT_S, end_session_on: list[str] | None = None) -> None:
        """Options as a scenario file gives them (any TOML value): each is checked here, all at once."""
        #: Text frames only; echo replies and message echoes must carry a tracingId we sent.
        self.expects = Expects(required=REQUIRED, fatal=check_fatal(end_session_on, self.name))
        problems: list[tuple[str, Any, str]] = []
        if not isinstance(deployment_id, str) or not deployment_id.strip():
            problems.append(("deployment_id", deployment_id if deployment_id else MISSING,
                             "the Messenger deployment's id (a UUID), e.g. "
                             'deployment_id = {env = "GENESYS_DEPLOYMENT_ID"}'))
        if not isinstance(origin, str) or (origin and urlsplit(origin).scheme not in ("http", "https")):
            problems.append(("origin", origin, "an origin such as \"https://www.example.com\" "
                             "(empty: the target's own scheme and host)"))
        if not isinstance(application, str):
            problems.append(("application", application, "a string: the client's name, sent as &application="))
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(("path", path, 'a path starting with "/" (default "/v1")'))
        if goodbye not in GOODBYES:
            problems.append(("goodbye", goodbye, "one of " + ", ".join(f'"{g}"' for g in GOODBYES)))
        if not isinstance(close_all_connections, bool):
            problems.append(("close_all_connections", close_all_connections, "true or false"))
        if isinstance(goodbye_timeout, bool) or not isinstance(goodbye_timeout, (int, float)) or not (
                0 < goodbye_timeout <= 300):
            problems.append(("goodbye_timeout", goodbye_timeout,
                             "seconds the goodbye waits for its answers, more than 0 and at most 300"))
        if problems:
            raise ProfileOptionError(self.name, problems)
        self.deployment_id = deployment_id.strip()
        self.origin = origin.rstrip("/")
        self.application = application
        self.path = path
        self.goodbye = goodbye
        self.close_all_connections = close_all_connections
        self.goodbye_timeout = float(goodbye_timeout)
        query = {"deploymentId": self.deployment_id}
        if application:
            query["application"] = application
        self._query = urlencode(query, quote_via=quote)

    def __repr__(self) -> str:  # the deployment id is a secret of the scenario: never in logs
        return (f"WebMessagingProfile(deployment_id=<hidden>, origin={self.origin!r}, "
                f"application={self.application!r}, goodbye={self.goodbye!r})")

    def check_keepalive(self, interval_s: float) -> None:
        if interval_s < self.min_keepalive_s:
            raise ConfigError(
                f"keepalive interval {interval_s:g} s is below the webmessaging minimum of "
                f"{self.min_keepalive_s:g} s (Genesys clients send at most 2 echo frames per minute "
                f"per connection): set --keepalive-interval {self.min_keepalive_s:g} or more"
            )

    # -- token: made by the guest ------------------------------------------------

    def token_request(self, base_url: str, guest_no: int) -> TokenRequest | None:
        return None

    def token_grant(self, status: int | None, body: bytes, guest_no: int) -> TokenGrant:
        """A fresh guest: its session token and its customer (cookie) id, both lower-case UUIDs."""
        return TokenGrant(str(uuid.uuid4()), str(uuid.uuid4()))

    # -- connection ------------------------------------------------------------------

    def websocket_url(self, base_url: str, grant: TokenGrant) -> str:
        return ws_url_from_base(base_url, self.path, self._query)

    def handshake_headers(self, base_url: str) -> list[tuple[str, str]]:
        origin = self.origin
        if not origin:
            parts = urlsplit(base_url)
            scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
            origin = f"{scheme}://{parts.netloc}"
        return [("Origin", origin)]

    # -- frames out --------------------------------------------------------------------

    def auth_frame(self, grant: TokenGrant, style: str = "normal") -> bytes | None:
        if style == "none":
            return None
        token = grant.token
        if style == "bad_token":  # longer than the service accepts
            token = token + "x" * (MAX_TOKEN_CHARS + 1 - len(token))
        frame: dict[str, Any] = {
            "action": "configureSession",
            "deploymentId": self.deployment_id,
            "token": token,
            "startNew": False,
            "journeyContext": {
                "customer": {"id": grant.guest_id, "idType": "cookie"},
                "customerSession": {"id": "", "type": "web"},
            },
        }
        if style == "wrong_case":
            frame["action"] = "ConfigureSession"
        elif style == "command":  # the seed thread's key, transplanted
            frame["command"] = frame.pop("action")
        return orjson.dumps(frame)

    def ping_frame(self, seq: int, grant: TokenGrant) -> tuple[bytes, Any]:
        ref = f"{ECHO_PREFIX}{seq}"
        return orjson.dumps({
            "action": "echo", "token": grant.token, "tracingId": ref,
            "message": {"type": "Text", "text": "ping", "metadata": {"customMessageId": HEALTH_CHECK_ID}},
        }), ref

    def message_frame(self, seq: int, text: str, grant: TokenGrant) -> tuple[bytes, Any]:
        ref = str(uuid.uuid4())
        return orjson.dumps({
            "action": "onMessage", "token": grant.token, "tracingId": ref,
            "message": {"type": "Text", "text": text},
        }), ref

    def presence_frame(self, grant: TokenGrant, presence: str, tracing: str | None = None) -> bytes:
        """An ``onMessage`` Presence event (``Join`` or ``Clear``)."""
        return orjson.dumps({
            "action": "onMessage", "token": grant.token, "tracingId": tracing or str(uuid.uuid4()),
            "message": {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": presence}}]},
        })

    def close_session_frame(self, grant: TokenGrant, tracing: str | None = None) -> bytes:
        """``closeSession``, with a ``tracingId`` (as the SDKs send it) so its refusal can be told apart."""
        return orjson.dumps({"action": "closeSession", "token": grant.token,
                             "closeAllConnections": self.close_all_connections,
                             "tracingId": tracing or str(uuid.uuid4())})

    def _goodbye_makers(self, grant: TokenGrant) -> dict[str, Callable[[str], bytes]]:
        return {CLEAR: lambda ref: self.presence_frame(grant, "Clear", ref),
                CLOSE_SESSION: lambda ref: self.close_session_frame(grant, ref)}

    def goodbye_frames(self, grant: TokenGrant) -> list[bytes]:
        """The goodbye's requests, unanswered (for ``loadkit probe``; the driver uses ``goodbye_flow``)."""
        makers = self._goodbye_makers(grant)
        return [makers[step](str(uuid.uuid4())) for step in _GOODBYE_STEPS[self.goodbye]]

    def goodbye_flow(self, grant: TokenGrant) -> WebMessagingGoodbye:
        """The goodbye as the SDKs speak it: each request awaited, within ``goodbye_timeout``."""
        return WebMessagingGoodbye(_GOODBYE_STEPS[self.goodbye], self._goodbye_makers(grant), self.goodbye_timeout)

    # -- frames in -----------------------------------------------------------------------

    def classify(self, data: bytes | str) -> ServerEvent:
        obj = json_object(data)
        if isinstance(obj, ServerEvent):
            return obj  # MALFORMED
        cls = obj.get("class")
        body: Any = obj.get("body")
        code: Any = obj.get("code")
        tracing = obj.get("tracingId")
        if type(cls) is not str:
            return ServerEvent(_E.UNKNOWN, detail="no class", bad=UNKNOWN_TYPE)
        lacking = missing_fields(obj, ENVELOPE)
        if lacking:
            return ServerEvent(_E.MALFORMED, detail=f"envelope without {lacking}", bad=MISSING_FIELDS)
        if cls in _OBJECT_BODY:
            if type(body) is not dict:
                return ServerEvent(_E.MALFORMED, detail=f"{cls} without an object body", bad=MISSING_FIELDS)
            lacking = missing_fields(body, REQUIRED[cls])
            if lacking:
                return ServerEvent(_E.MALFORMED, detail=f"{cls} without body.{lacking}", bad=MISSING_FIELDS)
        if cls == "StructuredMessage":
            direction = body.get("direction")
            if direction == "Inbound":
                if body.get("type") == "Event":  # our own typing or presence, echoed: nothing to act on
                    return ServerEvent(_E.IGNORED, detail="Inbound Event")
                if _is_echo_reply(tracing, body):  # Genesys's own stub may leave out the tracingId
                    return ServerEvent(_E.PONG, tracing)
                if type(tracing) is not str:  # an echo of our message we could never match
                    return ServerEvent(_E.MALFORMED, detail="Inbound StructuredMessage without tracingId",
                                       bad=MISSING_FIELDS)
                return ServerEvent(_E.ACK, tracing)
            if direction == "Outbound":
                if body.get("type") == "Event":  # typing indicators, presence: nothing to act on
                    return ServerEvent(_E.IGNORED, detail="Outbound Event")
                return ServerEvent(_E.AGENT_MESSAGE, None, detail=str(body.get("originatingEntity", "")))
            return ServerEvent(_E.UNKNOWN, detail="StructuredMessage direction=" + repr(direction)[:40],
                               bad=UNKNOWN_TYPE)
        if cls == "SessionResponse":
            if body["connected"] is False:  # a session answer that is not a session (closeSession's answer)
                return ServerEvent(_E.SESSION_ENDED, tracing, code=code, detail=SESSION_CLOSED, fields=body)
            return ServerEvent(_E.AUTH_OK, tracing, code=code, fields=body)
        if cls == "TooManyRequestsErrorMessage":
            retry = body["retryAfter"]
            return ServerEvent(_E.RATE_LIMITED, tracing, code=body["errorCode"],
                               retry_after=float(retry) if _number(retry) else None,
                               detail=str(body.get("errorMessage", "")))
        if cls == "SessionExpiredEvent":
            return ServerEvent(_E.SESSION_EXPIRED, detail=cls)
        if cls == "ConnectionClosedEvent" or cls == "SessionClearedEvent" or cls == "LogoutEvent":
            return ServerEvent(_E.SESSION_ENDED, detail=cls, fields=body if type(body) is dict else {})
        if code >= 400:  # "string" errors, and any other class with an error code
            if code in _EXPIRED_CODES:
                return ServerEvent(_E.SESSION_EXPIRED, code=code, detail=_text(body))
            if code in _RATE_CODES:
                return ServerEvent(_E.RATE_LIMITED, tracing, code=4029, detail=_text(body))
            return ServerEvent(_E.ERROR, tracing, code=code, detail=_text(body))
        if cls in _KNOWN_OTHER:
            return ServerEvent(_E.IGNORED, detail=cls)
        return ServerEvent(_E.UNKNOWN, detail="class=" + repr(cls)[:40], bad=UNKNOWN_TYPE)


def _is_echo_reply(tracing: Any, body: dict[str, Any]) -> bool:
    if type(tracing) is str and tracing.startswith(ECHO_PREFIX):
        return True
    meta = body.get("metadata")
    return type(meta) is dict and meta.get("customMessageId") == HEALTH_CHECK_ID


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _number(value: Any) -> bool:
    return type(value) in (int, float) and value > 0


def _text(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return str(body.get("errorMessage") or body.get("message") or "")
    return ""
