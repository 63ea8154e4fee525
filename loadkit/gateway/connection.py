"""One TCP connection to the gateway: a WebSocket upgrade, or one plain HTTP request.

Why the gateway reads the first request itself: websockets' HTTP parser
accepts only an upgrade GET, but the same port also serves the token
endpoint (``POST``), stats and health, as a real gateway does. So every
connection's first request is parsed by h11 (chunked bodies, size limits and
malformed heads handled by a maintained HTTP/1.1 implementation, not by
hand). A GET with ``Upgrade: websocket`` is then replayed, byte for byte,
into websockets; any other request is answered here with ``Connection:
close``. websockets' handler task for such a connection sees it end before
a request and returns quietly, so plain HTTP leaves no tasks or log lines.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import h11
import orjson
from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.frames import CloseCode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from .faults import SessionPlan
from .settings import GatewaySettings
from .stats import CloseRecord, GatewayStats

__all__ = [
    "AdmittedSession", "Answer", "GatewayConnection", "GatewayProtocol", "HttpRequest", "Owner", "REASONS",
    "error", "refuse",
]

log = logging.getLogger("loadkit.gateway")

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024

REASONS = {1007: "invalid payload", 1009: "message too big", 1011: "internal error"}
"""The contract's reason texts for the closes websockets itself sends."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One plain HTTP request, body complete (de-chunked)."""

    method: str
    target: str
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Answer:
    """A plain HTTP answer: status, JSON body (or none), extra headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()


def error(status: int, name: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    """The gateway's error document: ``{"error": name, "message": message}``."""
    return Answer(status, {"error": name, "message": message}, headers)


def refuse(stats: GatewayStats, status: int, name: str, message: str) -> Response:
    """Refuse a WebSocket upgrade with a JSON error (counted in ``upgrades.refused``).

    429 and 503 carry ``Retry-After: 1``: both say "come back", and a client
    that honours the header is what the contract asks for.
    """
    stats.upgrades_refused[str(status)] += 1
    headers = Headers([("Content-Type", "application/json"), ("Connection", "close")])
    if status in (429, 503):
        headers["Retry-After"] = "1"
    body = orjson.dumps({"error": name, "message": message})
    headers["Content-Length"] = str(len(body))
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


class AdmittedSession(Protocol):
    """What admission opens on a connection and the gateway runs (``sessions.Session``).

    A protocol, not an import: sessions are built on connections, so naming
    the class here would make the two modules import each other.
    """

    conn: GatewayConnection

    async def run(self) -> CloseRecord: ...

    def age_at_end(self) -> float | None: ...


class Owner(Protocol):
    """What a connection needs from its gateway."""

    settings: GatewaySettings

    def handle_http(self, request: HttpRequest) -> Answer | Awaitable[Answer]: ...

    def release(self, conn: GatewayConnection) -> None: ...


class GatewayProtocol(ServerProtocol):
    """websockets' server protocol, failing with the contract's reason texts.

    websockets closes a connection itself on an oversized frame (1009) or
    invalid UTF-8 (1007), with a reason like "frame with 70000 bytes exceeds
    limit of 65536 bytes". Clients of this gateway are promised "message too
    big" and "invalid payload", so the translation happens here, in one place.
    """

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        return super().fail(code, REASONS.get(int(code), reason))


class GatewayConnection(ServerConnection):
    """One TCP connection; see the module docstring. Bound to its gateway by a subclass."""

    owner: Owner  # set on the subclass Gateway.start() makes

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        protocol = GatewayProtocol(max_size=self.owner.settings.max_frame_bytes)
        super().__init__(protocol, server, **kwargs)
        self._http: h11.Connection | None = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._raw: bytearray | None = bytearray()  # the bytes of the first head, for websockets
        self._websocket = False
        self._request: tuple[str, str] | None = None
        self._body = bytearray()
        self._pending: asyncio.Future[Answer] | None = None
        #: Set by admission: this connection's fault plan, and how to open its session.
        self.plan: SessionPlan | None = None
        self.opener: Callable[[SessionPlan], AdmittedSession] | None = None
        self.reserved = False  # holds one of max_connections
        #: Loop time at which the WebSocket stopped being open: our close frame
        #: sent, the peer's received, or the link lost (the end of a session's age).
        self.closing_at: float | None = None
        #: Called with each pong the client sends (a ping flood counts its answers); None: not asked.
        self.on_pong: Callable[[], None] | None = None

    def _note_closing(self) -> None:
        if self.closing_at is None and self._websocket and self.protocol.state is not State.OPEN \
                and self.protocol.state is not State.CONNECTING:
            self.closing_at = self.loop.time()

    async def close(self, code: CloseCode | int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        if self.closing_at is None and self.protocol.state is State.OPEN:
            self.closing_at = self.loop.time()  # the close frame goes out now
        await super().close(code, reason)

    def data_received(self, data: bytes) -> None:
        if self._websocket:
            super().data_received(data)
            self._note_closing()
            return
        if self._http is None:
            return  # plain HTTP request already answered; ignore the rest
        if self._raw is not None:
            self._raw += data
        self._http.receive_data(data)
        self._advance(self._http)

    def _advance(self, parser: h11.Connection) -> None:
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    self._answer(error(431, "header_too_large", "request head over 16 KiB"))
                else:
                    self._answer(error(400, "bad_request", f"malformed HTTP request: {exc}"))
                return
            if isinstance(event, h11.Request):
                if self._on_head(event):
                    return
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_BODY_BYTES:
                    self._answer(error(413, "bad_request", "body over 64 KiB"))
                    return
            elif isinstance(event, h11.EndOfMessage):
                assert self._request is not None
                method, target = self._request
                answer = self.owner.handle_http(HttpRequest(method, target, bytes(self._body)))
                if isinstance(answer, Answer):
                    self._answer(answer)
                else:  # a handler that asks the gateway's other processes first
                    self._pending = asyncio.ensure_future(answer)
                    self._pending.add_done_callback(self._answer_later)
                return
            else:  # NEED_DATA, PAUSED or the client's EOF: wait (or let asyncio close)
                return

    def _on_head(self, request: h11.Request) -> bool:
        """A request head: hand an upgrade to websockets; True once this connection is routed."""
        assert self._raw is not None
        end = self._raw.find(b"\r\n\r\n")
        if (end if end >= 0 else len(self._raw)) > MAX_HEAD_BYTES:  # h11 limits only incomplete heads
            self._answer(error(431, "header_too_large", "request head over 16 KiB"))
            return True
        method = request.method.decode("ascii")
        upgrade = b", ".join(value for name, value in request.headers if name == b"upgrade")
        if method == "GET" and b"websocket" in upgrade.lower():
            raw, self._raw, self._http, self._websocket = bytes(self._raw), None, None, True
            super().data_received(raw)
            return True
        self._raw = None
        length = b"".join(value for name, value in request.headers if name == b"content-length")
        if length and int(length) > MAX_BODY_BYTES:  # h11 has checked it is a number
            self._answer(error(413, "bad_request", "bad Content-Length"))
            return True
        self._request = (method, request.target.decode("latin-1"))
        return False

    def _answer_later(self, task: asyncio.Future[Answer]) -> None:
        self._pending = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("plain HTTP handler failed: %r", exc)
        self._answer(task.result() if exc is None else error(500, "internal", "the gateway failed to answer"))

    def _answer(self, answer: Answer) -> None:
        parser, self._http = self._http, None
        if parser is None or self.transport.is_closing():
            return
        payload = orjson.dumps(answer.body) if answer.body is not None else b""
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                   ("Connection", "close"), *answer.headers]
        reason = http.HTTPStatus(answer.status).phrase.encode()
        out = parser.send(h11.Response(status_code=answer.status, headers=headers, reason=reason)) or b""
        out += parser.send(h11.Data(data=payload)) or b""
        out += parser.send(h11.EndOfMessage()) or b""
        self.transport.write(out)
        self.transport.close()

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` to the socket as it is, after whatever websockets has queued.

        For the anomaly faults (``anomalies.py``): frames no library writes
        (invalid UTF-8, reserved bits, a flood in one write with auth_ok).
        Complete frames only: websockets keeps no state about data frames it
        did not write. Like ``send``, it raises ``ConnectionClosed`` (after
        the closing handshake) when the connection is no longer open, and it
        waits for the socket's buffer to drain.
        """
        async with self.send_context():
            self.send_data()  # the protocol's own frames, already due, go first
            self.transport.write(data)

    def acknowledge_pings(self, data: bytes) -> None:
        if self.on_pong is not None:
            self.on_pong()
        super().acknowledge_pings(data)

    def eof_received(self) -> None:
        if self._websocket:
            super().eof_received()
            self._note_closing()
        # else: returning None lets asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._note_closing()
        if self.reserved:
            self.reserved = False
            self.owner.release(self)
