"""The frames the Web Messaging endpoint sends, as plain data (``webmessaging-protocol.md``).

Why apart from the socket code: what a frame looks like is the contract, and
reads best in one place; the socket (``webmessaging.py``) decides only which
one to send when. Pure, apart from fresh ids and the wall-clock timestamps the
protocol carries.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = ["BOT_TEXT", "NOTICES", "bot_reply", "closed_session_body", "echo_body", "inbound", "is_presence_clear",
           "jwt_body", "notice", "response", "session_body", "too_many"]

BOT_TEXT = "Hi, how can I help?"

#: A notice from another socket, and the event class it makes this socket send.
NOTICES = {
    "evicted": "ConnectionClosedEvent",   # a 4th socket pushed this one out
    "closed": "ConnectionClosedEvent",    # closeSession(closeAllConnections) on another socket
    "cleared": "SessionClearedEvent",     # Presence Clear: the conversation is over
    "expired": "SessionExpiredEvent",     # the session's inactivity TTL passed
}


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def response(cls: str, code: int, body: Any, tracing: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "response", "class": cls, "code": code, "body": body}
    if tracing is not None:
        frame["tracingId"] = tracing
    return frame


def too_many(retry_after: int, text: str, tracing: Any) -> dict[str, Any]:
    return response("TooManyRequestsErrorMessage", 429,
                    {"retryAfter": retry_after, "errorCode": 4029, "errorMessage": text}, tracing)


def notice(name: str) -> dict[str, Any]:
    """The event a notice sends: SessionExpiredEvent is a response, the others messages."""
    return {"type": "message" if name != "expired" else "response", "class": NOTICES[name],
            "code": 200, "body": {}}


def session_body(new: bool, ttl_s: float) -> dict[str, Any]:
    body: dict[str, Any] = {"connected": True, "newSession": new, "readOnly": False, "maxCustomDataBytes": 2048}
    if ttl_s > 0:
        body["durationSeconds"] = int(ttl_s)
        body["expirationDate"] = int(time.time() + ttl_s)
    return body


def closed_session_body() -> dict[str, Any]:
    """closeSession's answer: the session is closed (the SDKs then may configure a new one)."""
    return {"connected": False, "newSession": False, "readOnly": False}


def jwt_body() -> dict[str, Any]:
    return {"jwt": f"loadkit.{uuid.uuid4().hex}", "exp": int(time.time()) + 3600}


def echo_body(message: Any) -> dict[str, Any]:
    """An echo's answer: the client's text and metadata back, or "ping"."""
    body: dict[str, Any] = {"text": "ping", "type": "Text", "direction": "Inbound", "id": str(uuid.uuid4())}
    if isinstance(message, dict):
        if isinstance(message.get("text"), str):
            body["text"] = message["text"]
        if isinstance(message.get("metadata"), dict):
            body["metadata"] = message["metadata"]
    return body


def inbound(kind: str, content: Any, tracing: Any) -> dict[str, Any]:
    """The push that echoes an accepted onMessage to every socket of the session."""
    body: dict[str, Any] = {"type": kind, "direction": "Inbound", "id": str(uuid.uuid4()),
                            "channel": {"time": iso_now()}}
    body["text" if kind == "Text" else "events"] = content
    frame: dict[str, Any] = {"type": "message", "class": "StructuredMessage", "code": 200, "body": body}
    if tracing is not None:
        frame["tracingId"] = tracing
    return frame


def bot_reply() -> dict[str, Any]:
    return {"type": "message", "class": "StructuredMessage", "code": 200,
            "body": {"type": "Text", "text": BOT_TEXT, "direction": "Outbound", "id": str(uuid.uuid4()),
                     "channel": {"time": iso_now(), "type": "Private"}, "originatingEntity": "Bot"}}


def is_presence_clear(events: list[Any]) -> bool:
    """A Presence Clear event among ``events``: the guest ended the conversation."""
    return any(isinstance(e, dict) and e.get("eventType") == "Presence"
               and isinstance(e.get("presence"), dict) and e["presence"].get("type") == "Clear"
               for e in events)
