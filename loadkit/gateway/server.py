"""The reference gateway: the guest protocol over one port, with injectable faults.

Why a reference gateway at all: a harness that reports close codes, phases and
latencies is only believable if it has been run against a target whose
behaviour is known exactly. This server speaks ``guest-protocol.md`` to the
letter, misbehaves only when its fault plan says so, and counts what it did
(``/_gateway/stats``) so tests can compare both sides.

Layout of this module, top to bottom:

- ``CLOSES``: the close codes and reasons the gateway sends, as data;
- ``GatewayProtocol``: websockets' sans-I/O server protocol, with the
  contract's reason texts when websockets itself fails a connection;
- ``GatewayConnection``: sniffs the first request on a connection: a GET with
  ``Upgrade: websocket`` goes to websockets, anything else (token requests,
  stats, health) is answered here as plain HTTP/1.1, because websockets'
  parser only accepts GET;
- ``Session``: one WebSocket session, auth then chat, as straight-line code;
- ``Gateway``: settings, tokens, fault plan, stats, HTTP routes, lifecycle.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import math
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from . import custom, webmessaging
from .faults import FaultPlan, SessionPlan
from .wire import inject_drop
from .settings import GatewaySettings
from .stats import CloseRecord, GatewayStats, Phase, close_record
from .tokens import TokenError, TokenSigner

__all__ = ["Gateway", "CLOSES", "WS_PATH", "TOKEN_PATH"]

log = logging.getLogger("loadkit.gateway")

WS_PATH = "/api/v2/guest/websocket"
TOKEN_PATH = "/api/v2/guests"
STATS_PATH = "/_gateway/stats"
HEALTH_PATH = "/_gateway/health"
RESTART_PATH = "/_gateway/restart"
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024

CLOSES: dict[str, tuple[int, str]] = {
    "auth_rejected": (1000, ""),  # silent mode: the seed thread's symptom
    "unauthorized": (4001, "unauthorized"),
    "forbidden": (4003, "forbidden"),
    "auth_timeout": (4008, "auth timeout"),
    "idle": (1001, "idle timeout"),
    "going_away": (1001, "going away"),
    "restart": (1012, "service restart"),
    "overloaded": (1013, "try again later"),
    "internal": (1011, "internal error"),
    "too_big": (1009, "message too big"),
    "invalid": (1007, "invalid payload"),
    "expired": (4006, "session expired"),
    "rate_limit": (4029, "rate limit"),
}
"""Close codes and reasons from the contract's table, by what they mean."""


class GatewayProtocol(ServerProtocol):
    """websockets' server protocol, failing with the contract's reason texts.

    websockets closes a connection itself on an oversized frame (1009) or
    invalid UTF-8 (1007), with a reason like "frame with 70000 bytes exceeds
    limit of 65536 bytes". Clients of this gateway are promised "message too
    big" and "invalid payload", so the translation happens here, in one place.
    """

    REASONS = {1007: CLOSES["invalid"][1], 1009: CLOSES["too_big"][1], 1011: CLOSES["internal"][1]}

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        return super().fail(code, self.REASONS.get(int(code), reason))


def _http_response(status: int, body: dict[str, Any] | None, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    payload = orjson.dumps(body) if body is not None else b""
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
             "Content-Type: application/json", f"Content-Length: {len(payload)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _error(status: int, error: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict[str, Any], tuple[tuple[str, str], ...]]:
    return status, {"error": error, "message": message}, headers


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers (lower-cased names). ValueError if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(version)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(line)
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


class GatewayConnection(ServerConnection):
    """One TCP connection: a WebSocket upgrade, or one plain HTTP request.

    The first request head is buffered before websockets sees any byte. A GET
    with ``Upgrade: websocket`` is replayed into websockets unchanged; any
    other request is answered here with ``Connection: close``. websockets'
    handler task for the latter sees the connection end before a request and
    returns quietly, so plain HTTP leaves no log lines and no tasks behind.
    """

    gateway: Gateway  # bound by Gateway.start() through a subclass

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        protocol = GatewayProtocol(max_size=self.gateway.settings.max_frame_bytes)
        super().__init__(protocol, server, **kwargs)
        self._head: bytearray | None = bytearray()  # None once routed
        self._websocket = False
        self.plan: SessionPlan | None = None
        self.reserved = False  # holds one of max_connections
        self.webmessaging: webmessaging.Admission | None = None  # set for /v1 upgrades

    def data_received(self, data: bytes) -> None:
        if self._websocket:
            super().data_received(data)
            return
        if self._head is None:
            return  # plain HTTP request already answered; ignore the rest
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._answer(*_error(431, "header_too_large", "request head over 16 KiB"))
            return
        try:
            method, target, headers = _parse_head(bytes(self._head[:end]))
        except ValueError:
            self._answer(*_error(400, "bad_request", "malformed HTTP request"))
            return
        if method == "GET" and "websocket" in headers.get("upgrade", "").lower():
            buffered, self._head, self._websocket = bytes(self._head), None, True
            super().data_received(buffered)
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._answer(*_error(400 if length < 0 else 413, "bad_request", "bad Content-Length"))
            return
        body = bytes(self._head[end + 4:end + 4 + length])
        if len(body) < length:
            return  # wait for the rest of the body
        self._answer(*self.gateway.handle_http(method, target, body))

    def _answer(self, status: int, body: dict[str, Any] | None, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._head = None
        self.transport.write(_http_response(status, body, headers))
        self.transport.close()

    def eof_received(self) -> None:
        if self._websocket:
            super().eof_received()
        # else: returning None lets asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.reserved:
            self.reserved = False
            self.gateway.active -= 1


class _Invalid:
    """A frame that is not a UTF-8 JSON text frame."""


INVALID = _Invalid()


class Session:
    """One WebSocket session, from the first frame to the recorded close.

    Deadlines (auth, idle, token expiry, injected drop) are checked around a
    single ``recv()``, so a session costs one task plus one per delayed
    outgoing frame; nothing polls.
    """

    def __init__(self, gateway: Gateway, conn: GatewayConnection, plan: SessionPlan) -> None:
        self.gw = gateway
        self.settings = gateway.settings
        self.conn = conn
        self.plan = plan
        self.loop = asyncio.get_running_loop()
        self.phase: Phase = "pre_auth"
        self.tasks: set[asyncio.Task[None]] = set()
        self.window: collections.deque[float] = collections.deque()
        self.strikes = 0
        self.replies = 0
        self.message_plans = gateway.plan.messages(plan.seq)
        self.last_frame = self.loop.time()
        self.expires_at = math.inf  # loop time

    async def run(self) -> CloseRecord:
        """Run the session and return how it ended on the wire."""
        try:
            if await self._authenticate():
                await self._chat()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("session %s failed", self.plan.seq)
            await self.conn.close(*CLOSES["internal"])
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.conn.protocol.state is OPEN:  # every path closes; this is a bug net
                log.error("session %s ended without a close", self.plan.seq)
                await self.conn.close(*CLOSES["internal"])
            await self.conn.wait_closed()
        p = self.conn.protocol
        return close_record(p.close_sent, p.close_rcvd, p.close_rcvd_then_sent, self.phase)

    # --- helpers -------------------------------------------------------------

    async def _send(self, frame: dict[str, Any], error_code: int | None = None) -> None:
        await self.conn.send(orjson.dumps(frame), text=True)
        self.gw.stats.frame_sent(frame["type"], error_code)

    async def _send_error(self, code: int, message: str, **extra: Any) -> None:
        await self._send({"type": "error", "code": code, "message": message, **extra}, code)

    async def _send_later(self, delay: float, frame: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        try:
            await self._send(frame)
        except ConnectionClosed:
            pass

    def _spawn(self, delay: float, frame: dict[str, Any]) -> None:
        task = self.loop.create_task(self._send_later(delay, frame))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _pause(self, seconds: float) -> bool:
        """Sleep, but wake when the connection closes; True if it is still open."""
        await asyncio.wait([self.conn.connection_lost_waiter], timeout=seconds)
        return self.conn.protocol.state is OPEN

    async def _receive(self, deadline: float) -> Any:
        """Next decoded frame; TimeoutError at ``deadline``; INVALID if not UTF-8 JSON text.

        A deadline already past raises at once, so a client flooding frames
        cannot postpone its own idle, expiry or drop deadline.
        """
        if self.loop.time() >= deadline:
            raise TimeoutError
        try:
            async with asyncio.timeout_at(deadline):
                raw = await self.conn.recv()
        except ConnectionClosed:
            if isinstance(self.conn.connection_exc, UnicodeDecodeError):
                self.gw.stats.frame_received(None)  # a text frame that was not UTF-8: closed 1007
            raise
        self.last_frame = self.loop.time()
        frame: Any = INVALID
        if isinstance(raw, str):
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
        self.gw.stats.frame_received(frame.get("type") if isinstance(frame, dict) else None)
        return frame

    # --- phases ----------------------------------------------------------------

    async def _authenticate(self) -> bool:
        """First frame must be a valid auth frame; True once auth_ok is sent."""
        try:
            frame = await self._receive(self.loop.time() + self.settings.auth_deadline_s)
        except TimeoutError:
            await self.conn.close(*CLOSES["auth_timeout"])
            return False
        if frame is INVALID:
            await self.conn.close(*CLOSES["invalid"])
            return False
        credentials = custom.auth_credentials(frame, self.settings.auth_frame)
        if credentials is None:
            await self._reject(4001, custom.expected_auth(self.settings.auth_frame))
            return False
        guest_id, token = credentials
        verdict = self.gw.signer.verify(token, guest_id, time.time())
        if verdict.error is TokenError.MISSING_SCOPE:
            await self._reject(4003, "token lacks the guest:chat scope")
            return False
        if verdict.error is not None:
            await self._reject(4001, {TokenError.FORGED: "invalid token", TokenError.EXPIRED: "token expired",
                                      TokenError.GUEST_MISMATCH: "token was issued to another guestId"}[verdict.error])
            return False
        if self.plan.silent_close:
            self.gw.stats.faults["silent_close_after_auth"] += 1
            await self.conn.close(*CLOSES["auth_rejected"])
            return False
        delay = self.plan.auth_delay_s
        if self.gw.degraded():
            delay = self.plan.degraded_auth_delay_s
            self.gw.stats.faults["auth_degraded"] += 1
        if delay > 0:
            self.gw.stats.faults["auth_delayed"] += 1
            if not await self._pause(delay):
                return False
        assert verdict.claims is not None
        self.expires_at = self.loop.time() + (verdict.claims.expires_at - time.time())
        idle = self.settings.idle_timeout_s
        await self._send({"type": "auth_ok", "guestId": guest_id, "sessionId": str(uuid.uuid4()),
                          "idleTimeout": int(idle) if idle == int(idle) else idle})
        self.phase = "authenticated"
        self.gw.stats.authenticated += 1
        return True

    async def _reject(self, code: int, message: str) -> None:
        """Refuse an auth attempt: silently (1000 or 4003) or with an error frame first."""
        close = CLOSES["forbidden"] if code == 4003 else CLOSES["unauthorized"]
        if self.settings.auth_failure == "explicit":
            await self._send_error(code, message)
        elif code != 4003:
            close = CLOSES["auth_rejected"]
        await self.conn.close(*close)

    async def _chat(self) -> None:
        """Authenticated loop: answer frames until a deadline or a close ends it."""
        drop_at = math.inf
        if self.plan.drop_after_s is not None:
            drop_at = self.loop.time() + self.plan.drop_after_s
        while True:
            idle_at = self.last_frame + self.settings.idle_timeout_s
            try:
                frame = await self._receive(min(idle_at, self.expires_at, drop_at))
            except TimeoutError:
                first = min(idle_at, self.expires_at, drop_at)
                if first == drop_at:
                    await self._drop()
                elif first == self.expires_at:
                    self.gw.stats.faults["sessions_expired"] += 1
                    await self._send({"type": "session_expired"})
                    await self.conn.close(*CLOSES["expired"])
                else:
                    await self.conn.close(*CLOSES["idle"])
                return
            kind = frame.get("type") if isinstance(frame, dict) else None
            if frame is INVALID:
                await self.conn.close(*CLOSES["invalid"])
                return
            if kind == "ping":
                await self._send({"type": "pong", "id": frame.get("id")})
            elif kind == "message":
                if not await self._on_message(frame):
                    return
            elif kind != "typing":
                await self._send_error(4400, "malformed frame: unknown or missing type")

    async def _on_message(self, frame: dict[str, Any]) -> bool:
        """Ack (and maybe answer) one chat message; False if the session was closed."""
        message_id, text = frame.get("id"), frame.get("text")
        if not isinstance(message_id, (str, int)) or isinstance(message_id, bool) or not isinstance(text, str):
            await self._send_error(4400, "malformed frame: message needs id and text")
            return True
        if len(text) > self.settings.max_text_length:
            await self._send_error(4011, f"message longer than {self.settings.max_text_length} characters",
                                   id=message_id)
            return True
        now = self.loop.time()
        while self.window and self.window[0] <= now - 1.0:
            self.window.popleft()
        limit = self.settings.rate_limit_per_s
        if limit and len(self.window) >= limit:
            self.strikes += 1
            retry = max(1, math.ceil(self.window[0] + 1.0 - now))
            await self._send_error(4029, "rate limited", retryAfter=retry, id=message_id)
            if self.settings.rate_limit_strikes and self.strikes >= self.settings.rate_limit_strikes:
                await self.conn.close(*CLOSES["rate_limit"])
                return False
            return True
        self.strikes = 0
        self.window.append(now)
        mp = next(self.message_plans)
        ack = {"type": "ack", "id": message_id, "ts": int(time.time() * 1000)}
        if mp.ack_delay_s > 0:
            self.gw.stats.faults["acks_delayed"] += 1
            self.gw.stats.faults["acks_out_of_order"] += mp.out_of_order
            self._spawn(mp.ack_delay_s, ack)
        else:
            await self._send(ack)
        if self.settings.agent_replies:
            self.replies += 1
            self.gw.stats.faults["agent_replies_delayed"] += self.settings.faults.agent_delay.enabled
            self._spawn(mp.agent_delay_s, {"type": "message", "from": "agent", "id": f"a-{self.replies}",
                                           "text": f"Agent reply to: {text[:200]}", "replyTo": message_id})
        return True

    async def _drop(self) -> None:
        """Injected drop: a close frame with the planned code, or a TCP reset."""
        await inject_drop(self.conn, self.plan.drop_code, self.gw.stats)


class Gateway:
    """Owns settings, tokens, fault plan and stats; serves HTTP and WebSocket on one port."""

    def __init__(self, settings: GatewaySettings) -> None:
        assert settings.seed is not None, "resolve the seed before building a Gateway"
        self.settings = settings
        think = settings.agent_think_s
        self.plan = FaultPlan(settings.faults, settings.seed, think)
        self.signer = TokenSigner(settings.secret or None)
        self.stats = GatewayStats()
        self.sessions: set[Session] = set()
        self.active = 0  # reserved upgrades + open sessions, against max_connections
        self.seq = 0
        self.draining = False
        self.paused_until = 0.0  # loop time; upgrades get 503 before it (rolling restart)
        self.stopping = asyncio.Event()
        self.token_window: collections.deque[float] = collections.deque()
        self.background: set[asyncio.Task[Any]] = set()
        self.server: Server | None = None
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.webmessaging = webmessaging.Hub(self)

    # --- lifecycle -------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 = any free port) and return the bound port."""
        connection_class = type("BoundGatewayConnection", (GatewayConnection,), {"gateway": self})
        self.server = await serve(
            self._handler, host, port,
            ssl=self._tls_context(),
            create_connection=connection_class,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,  # the protocol's app-level ping is the keepalive
            max_size=self.settings.max_frame_bytes,
            open_timeout=self.settings.open_timeout_s,
            close_timeout=self.settings.close_timeout_s,
            server_header=None,
        )
        if self.settings.faults.restart_at_s > 0:
            self._background(self._restart_later(self.settings.faults.restart_at_s))
        return int(self.server.sockets[0].getsockname()[1])

    def _tls_context(self) -> Any:
        """An SSL context when ``tls_cert`` is set: HTTPS and WSS on the same port."""
        if not self.settings.tls_cert:
            return None
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key or None)
        return ctx

    def degraded(self) -> bool:
        """Past ``faults.degrade_at_s`` (a gateway getting worse during a soak)."""
        at = self.settings.faults.degrade_at_s
        return at > 0 and self.loop.time() - self.started_at >= at

    def request_stop(self) -> None:
        """Signal handler / stdin EOF: begin a graceful shutdown."""
        self.stopping.set()

    async def shutdown(self) -> None:
        """Stop accepting, close every session with 1001 "going away", wait for handlers."""
        self.draining = True
        self.stopping.set()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.server is not None:
            self.server.close(close_connections=True, code=CLOSES["going_away"][0], reason=CLOSES["going_away"][1])
            await self.server.wait_closed()

    def _background(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.restart(self.settings.faults.restart_pause_s)

    async def restart(self, pause_s: float) -> None:
        """Rolling restart: close every session with 1012, refuse upgrades (503) for ``pause_s``."""
        self.stats.faults["restarts"] += 1
        self.paused_until = self.loop.time() + pause_s
        log.info("rolling restart: closing %d sessions, pausing upgrades %.1f s", len(self.sessions), pause_s)
        # Shielded: a close abandoned half-way (by shutdown cancelling this task)
        # would leave its connection CLOSING with nobody enforcing close_timeout.
        closes = [s.conn.close(*CLOSES["restart"]) for s in list(self.sessions)]
        await asyncio.shield(asyncio.gather(*closes, return_exceptions=True))

    # --- WebSocket -----------------------------------------------------------

    def _unavailable(self, conn: GatewayConnection) -> Response | None:
        """503 while draining, during a restart pause, or at max_connections."""
        cap = self.settings.max_connections
        if self.draining or self.loop.time() < self.paused_until or (cap and self.active >= cap):
            return self._refuse(conn, 503, "unavailable", "gateway unavailable, retry later")
        return None

    def _refuse(self, conn: GatewayConnection, status: int, error: str, message: str) -> Response:
        self.stats.upgrades_refused[str(status)] += 1
        headers = Headers([("Content-Type", "application/json"), ("Connection", "close")])
        if status in (429, 503):
            headers["Retry-After"] = "1"
        body = orjson.dumps({"error": error, "message": message})
        headers["Content-Length"] = str(len(body))
        return Response(status, http.HTTPStatus(status).phrase, headers, body)

    async def _wait_unless_stopping(self, conn: GatewayConnection, seconds: float | None) -> None:
        stop = self.loop.create_task(self.stopping.wait())
        try:
            await asyncio.wait([stop, conn.connection_lost_waiter], timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _process_request(self, conn: GatewayConnection, request: Request) -> Response | None:
        """Admission of an upgrade: path, availability, then the planned upgrade faults."""
        path = urlsplit(request.path).path
        if path == webmessaging.WM_PATH:
            if refused := self.webmessaging.admit(conn, request):
                return refused
        elif path != WS_PATH:
            return conn.respond(http.HTTPStatus.NOT_FOUND, "no WebSocket endpoint here\n")
        plan = conn.plan = self.plan.session(self.seq)
        self.seq += 1
        if refused := self._unavailable(conn):
            return refused
        if plan.refuse_status is not None:
            self.stats.faults_upgrade_refused[str(plan.refuse_status)] += 1
            return self._refuse(conn, plan.refuse_status, "injected", "upgrade refused (fault injection)")
        if plan.stall:
            self.stats.faults["stalled_handshakes"] += 1
            await self._wait_unless_stopping(conn, None)  # until open_timeout_s drops it
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if plan.handshake_delay_s > 0:
            self.stats.faults["slow_handshakes"] += 1
            await self._wait_unless_stopping(conn, plan.handshake_delay_s)
            if refused := self._unavailable(conn):
                return refused
        conn.reserved = True
        self.active += 1
        return None

    async def _handler(self, conn: GatewayConnection) -> None:
        assert conn.plan is not None
        self.stats.upgrades_accepted += 1
        self.stats.session_opened()
        session: Any = (self.webmessaging.session(conn) if conn.webmessaging is not None
                        else Session(self, conn, conn.plan))
        self.sessions.add(session)
        try:
            record = await session.run()
        finally:
            self.sessions.discard(session)
        self.stats.session_closed(record)
        log.debug("session %d closed: %s", conn.plan.seq, record)

    # --- plain HTTP ----------------------------------------------------------

    def handle_http(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any] | None, tuple[tuple[str, str], ...]]:
        """Route one plain HTTP request; returns (status, JSON body, extra headers)."""
        url = urlsplit(target)
        routes = {
            (TOKEN_PATH, "POST"): lambda: self._issue_token(body),
            (STATS_PATH, "GET"): lambda: (200, self.stats.snapshot(self.settings.public_dict()), ()),
            (HEALTH_PATH, "GET"): lambda: (200, {"status": "draining" if self.draining else "ok"}, ()),
            (RESTART_PATH, "POST"): lambda: self._trigger_restart(url.query),
            (webmessaging.STATS_PATH, "GET"): lambda: (200, self.webmessaging.snapshot(), ()),
        }
        route = routes.get((url.path, method))
        if route is not None:
            return route()
        if any(path == url.path for path, _ in routes) or url.path == WS_PATH:
            if url.path == WS_PATH and method == "GET":
                return _error(426, "upgrade_required", "this endpoint needs a WebSocket upgrade")
            return _error(405, "method_not_allowed", f"{method} not allowed on {url.path}")
        return _error(404, "not_found", f"no route for {url.path}")

    def _issue_token(self, body: bytes) -> tuple[int, dict[str, Any], tuple[tuple[str, str], ...]]:
        if self.draining:
            self.stats.tokens_refused["503"] += 1
            return _error(503, "draining", "gateway is shutting down", (("Retry-After", "1"),))
        if body.strip():
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("displayName"), (str, type(None))):
                self.stats.tokens_refused["400"] += 1
                return _error(400, "bad_request", 'body must be a JSON object like {"displayName": "..."}')
        now = self.loop.time()
        while self.token_window and self.token_window[0] <= now - 1.0:
            self.token_window.popleft()
        limit = self.settings.token_rate_limit_per_s
        if limit and len(self.token_window) >= limit:
            self.stats.tokens_refused["429"] += 1
            retry = max(1, math.ceil(self.token_window[0] + 1.0 - now))
            return _error(429, "rate_limited", "too many token requests", (("Retry-After", str(retry)),))
        self.token_window.append(now)
        guest_id = str(uuid.uuid4())
        expires_at = time.time() + self.settings.token_ttl_s
        token = self.signer.issue(guest_id, expires_at, self.settings.token_scopes)
        self.stats.tokens_issued += 1
        return 201, {"guestId": guest_id, "token": token, "expiresAt": int(expires_at),
                     "scopes": list(self.settings.token_scopes)}, ()

    def _trigger_restart(self, query: str) -> tuple[int, dict[str, Any], tuple[tuple[str, str], ...]]:
        values = parse_qs(query).get("pause_s", [str(self.settings.faults.restart_pause_s)])
        try:
            pause = float(values[0])
            if not 0 <= pause < math.inf:
                raise ValueError
        except ValueError:
            return _error(400, "bad_request", "pause_s must be a number of seconds >= 0")
        closing = len(self.sessions)
        self._background(self.restart(pause))
        return 202, {"restarting": closing, "pause_s": pause}, ()

