"""Genesys Web Messaging on the reference gateway: ``/v1?deploymentId=…``.

Why here: the ``webmessaging`` profile is only believable once it has run
against a server that does what ``webmessaging-protocol.md`` says, including
the parts a real deployment would punish a load test for (the 2 per second
``onMessage`` limit, the 3-sockets-per-token rule). Everything that document
marks UNKNOWN is a setting (``[webmessaging]`` in ``settings.py``), never a
guess in this code.

Shape, mirroring ``server.Session``:

- ``Hub``: one per gateway. Admits upgrades on ``/v1`` (Origin allow-list →
  403), keeps the guest sessions by token (a session outlives its sockets:
  that is what makes a reconnect answer ``newSession: false``), counts what
  only this protocol has (``GET /_gateway/webmessaging``). Opened,
  authenticated and closed sessions go to the gateway's shared ground truth
  (``/_gateway/stats``), exactly like guest sessions.
- ``GuestSession``: the session a token names: its sockets in join order, its
  ``onMessage`` rate window, its last activity (for the inactivity TTL).
- ``Connection``: one socket, straight-line code around one ``recv()``.
  Another socket's action that concerns this one (an eviction, a cleared or
  closed session, an expiry) is posted as a *notice*: it reschedules this
  socket's receive deadline to now, so the socket's own task sends the event
  and closes, and no close is ever abandoned half-way by another task.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from .wire import inject_drop
from .stats import CloseRecord, Phase, close_record

if TYPE_CHECKING:
    from .server import Gateway, GatewayConnection
    from .settings import WebMessagingSettings

__all__ = ["WM_PATH", "STATS_PATH", "Admission", "Hub", "Connection", "GuestSession"]

log = logging.getLogger("loadkit.gateway")

WM_PATH = "/v1"
STATS_PATH = "/_gateway/webmessaging"
MAX_TOKEN_CHARS = 2048
ACTIONS = ("configureSession", "onMessage", "echo", "closeSession", "getJwt")
BOT_TEXT = "Hi, how can I help?"

#: A notice from another socket, and what it makes this socket send.
NOTICES = {
    "evicted": "ConnectionClosedEvent",   # a 4th socket pushed this one out
    "closed": "ConnectionClosedEvent",    # closeSession(closeAllConnections) on another socket
    "cleared": "SessionClearedEvent",     # Presence Clear: the conversation is over
    "expired": "SessionExpiredEvent",     # the session's inactivity TTL passed
}


@dataclass(frozen=True, slots=True)
class Admission:
    """What the upgrade request said, kept on the connection."""

    deployment_id: str | None
    origin: str | None
    application: str | None


class WebMessagingStats:
    """Counters only this protocol has; sessions and closes live in ``GatewayStats``."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter(dict.fromkeys((*ACTIONS, "other", "invalid"), 0))
        self.sent: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.sessions_new = 0
        self.sessions_resumed = 0
        self.evicted = 0
        self.closed_by_close_session = 0
        self.cleared = 0
        self.expired = 0
        self.deployment_not_found = 0
        self.origin_refused = 0
        self.rate_limited = 0
        self.echo_limited = 0
        self.text_too_long = 0

    def snapshot(self, active_sessions: int = 0) -> dict[str, Any]:
        return {
            "frames_received": dict(self.received),
            "frames_sent": dict(sorted(self.sent.items())),
            "errors_sent": dict(sorted(self.errors.items())),
            "sessions": {"new": self.sessions_new, "resumed": self.sessions_resumed, "active": active_sessions},
            "connection_closed_events": {"evicted": self.evicted, "close_session": self.closed_by_close_session},
            "sessions_cleared": self.cleared,
            "sessions_expired": self.expired,
            "deployment_not_found": self.deployment_not_found,
            "origin_refused": self.origin_refused,
            "rate_limited": self.rate_limited,
            "echo_limited": self.echo_limited,
            "text_too_long": self.text_too_long,
        }


class GuestSession:
    """The session one token names, across its sockets."""

    __slots__ = ("token", "conns", "window", "last_activity", "forget")

    def __init__(self, token: str, now: float) -> None:
        self.token = token
        self.conns: list[Connection] = []
        self.window: collections.deque[float] = collections.deque()
        self.last_activity = now
        self.forget: asyncio.TimerHandle | None = None


class Hub:
    """Web Messaging for one gateway: admission, sessions by token, protocol counters."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.stats = WebMessagingStats()
        self.sessions: dict[str, GuestSession] = {}

    @property
    def settings(self) -> WebMessagingSettings:
        return self.gw.settings.webmessaging

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(len(self.sessions))

    # --- admission ------------------------------------------------------------

    def admit(self, conn: GatewayConnection, request: Request) -> Response | None:
        """Check the Origin; remember deploymentId and application. A Response refuses."""
        origin = request.headers.get("Origin")
        allowed = self.settings.origins
        if allowed and origin not in allowed:
            self.stats.origin_refused += 1
            return self.gw._refuse(conn, 403, "forbidden", "origin not allowed for this deployment")
        query = parse_qs(urlsplit(request.path).query)
        conn.webmessaging = Admission(query.get("deploymentId", [None])[0], origin,
                                      query.get("application", [None])[0])
        return None

    def session(self, conn: GatewayConnection) -> Connection:
        return Connection(self, conn)

    # --- sessions by token -------------------------------------------------------

    def join(self, token: str, conn: Connection, start_new: bool) -> tuple[GuestSession, bool]:
        """The session ``token`` names (a new one if none, or it expired); True if new."""
        now = self.gw.loop.time()
        ttl = self.settings.session_ttl_s
        gs = self.sessions.get(token)
        new = gs is None or (ttl > 0 and now - gs.last_activity >= ttl) or start_new
        if gs is not None and new:
            self.end(gs, "closed" if start_new else "expired")
            gs = None
        if gs is None:
            gs = self.sessions[token] = GuestSession(token, now)
        if gs.forget is not None:
            gs.forget.cancel()
            gs.forget = None
        gs.last_activity = now
        gs.conns.append(conn)
        return gs, new

    def leave(self, conn: Connection) -> None:
        """``conn`` no longer belongs to its session; forget an empty session after a while."""
        gs = conn.guest
        conn.guest = None
        if gs is None:
            return
        if conn in gs.conns:
            gs.conns.remove(conn)
        if not gs.conns and self.sessions.get(gs.token) is gs and gs.forget is None:
            gs.forget = self.gw.loop.call_later(self.settings.resume_window_s, self._forget, gs)

    def _forget(self, gs: GuestSession) -> None:
        gs.forget = None
        if not gs.conns and self.sessions.get(gs.token) is gs:
            del self.sessions[gs.token]

    def end(self, gs: GuestSession, notice: str, exclude: Connection | None = None) -> None:
        """End a session: forget it, and tell each of its sockets (but ``exclude``) why."""
        if self.sessions.get(gs.token) is gs:
            del self.sessions[gs.token]
        if gs.forget is not None:
            gs.forget.cancel()
            gs.forget = None
        for conn in list(gs.conns):
            conn.guest = None
            if conn is not exclude:
                conn.notify(notice)
        gs.conns.clear()


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Connection:
    """One Web Messaging socket, from the upgrade to the recorded close."""

    def __init__(self, hub: Hub, conn: GatewayConnection) -> None:
        assert conn.webmessaging is not None and conn.plan is not None
        self.hub = hub
        self.gw = hub.gw
        self.settings = hub.settings
        self.conn = conn
        self.admission = conn.webmessaging
        self.plan = conn.plan
        self.loop = asyncio.get_running_loop()
        self.phase: Phase = "pre_auth"
        self.guest: GuestSession | None = None
        self.token: str | None = None
        self.configured = False
        self.expired = False       # the session expired and the socket stayed open
        self.detached = False      # ConnectionClosedEvent without a close: answers nothing more
        self.notices: collections.deque[str] = collections.deque()
        self.opened_at = self.loop.time()
        self.last_frame = self.opened_at
        self.drop_at = math.inf
        self.echoes: collections.deque[float] = collections.deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.message_plans = self.gw.plan.messages(self.plan.seq)
        self._timeout: asyncio.Timeout | None = None

    # --- life -------------------------------------------------------------------

    async def run(self) -> CloseRecord:
        try:
            await self._serve()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("webmessaging session %s failed", self.plan.seq)
            await self.conn.close(1011, "internal error")
        finally:
            self.hub.leave(self)
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.conn.protocol.state is OPEN:  # every path closes; this is a bug net
                log.error("webmessaging session %s ended without a close", self.plan.seq)
                await self.conn.close(1011, "internal error")
            await self.conn.wait_closed()
        p = self.conn.protocol
        return close_record(p.close_sent, p.close_rcvd, p.close_rcvd_then_sent, self.phase)

    def notify(self, notice: str) -> None:
        """Called by another socket's task: act on ``notice`` as soon as this task can."""
        self.notices.append(notice)
        if self._timeout is not None:
            self._timeout.reschedule(self.loop.time())

    async def _serve(self) -> None:
        while True:
            try:
                raw = await self._receive(self._deadline())
            except TimeoutError:
                if await self._on_deadline():
                    return
                continue
            if await self._dispatch(raw):
                return

    def _deadline(self) -> float:
        if self.notices:
            return -math.inf
        s = self.settings
        deadline = self.drop_at
        if s.idle_timeout_s > 0:
            deadline = min(deadline, self.last_frame + s.idle_timeout_s)
        if s.max_connection_age_s > 0:
            deadline = min(deadline, self.opened_at + s.max_connection_age_s)
        if self.guest is not None and s.session_ttl_s > 0:
            deadline = min(deadline, self.guest.last_activity + s.session_ttl_s)
        return deadline

    async def _receive(self, deadline: float) -> Any:
        """The next message (str or bytes); TimeoutError at ``deadline`` or on a notice.

        A deadline already past raises at once, so a flood of frames cannot
        postpone this socket's own deadlines or notices.
        """
        if self.loop.time() >= deadline:
            raise TimeoutError
        async with asyncio.timeout_at(None if deadline == math.inf else deadline) as cm:
            self._timeout = cm
            try:
                return await self.conn.recv()
            finally:
                self._timeout = None

    async def _on_deadline(self) -> bool:
        """A deadline passed or a notice came; True once the socket is closed."""
        s = self.settings
        if self.notices:
            return await self._on_notice(self.notices.popleft())
        now = self.loop.time()
        if now >= self.drop_at:
            await self._drop()
            return True
        if self.guest is not None and s.session_ttl_s > 0 and now >= self.guest.last_activity + s.session_ttl_s:
            self.hub.stats.expired += 1
            self.hub.end(self.guest, "expired")  # notifies this socket too
            return False
        if s.max_connection_age_s > 0 and now >= self.opened_at + s.max_connection_age_s:
            await self.conn.close(s.max_age_close_code, "connection age limit")
            return True
        if s.idle_timeout_s > 0 and now >= self.last_frame + s.idle_timeout_s:
            await self.conn.close(s.idle_close_code, "idle timeout")
            return True
        return False

    async def _on_notice(self, notice: str) -> bool:
        s = self.settings
        cls = NOTICES[notice]
        await self._send({"type": "message" if notice != "expired" else "response", "class": cls,
                          "code": 200, "body": {}})
        if cls == "ConnectionClosedEvent":
            if s.connection_closed_code:
                await self.conn.close(s.connection_closed_code, "connection closed")
                return True
            self.detached = True
        elif notice == "expired":
            if s.expired_close_code:
                await self.conn.close(s.expired_close_code, "session expired")
                return True
            self.expired = True
        return False

    async def _drop(self) -> None:
        """Injected drop (faults.drop_fraction): a close with the planned code, or a TCP reset."""
        await inject_drop(self.conn, self.plan.drop_code, self.gw.stats)

    # --- sending ------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        """Send one frame; once the client has started closing, drop it silently.

        A client's last frames (the goodbye) and its close frame arrive
        together: websockets then refuses to send, but still hands over the
        frames received before the close. They are processed and counted
        (a Presence Clear still ends the session); only their answers are lost.
        """
        await self._send_to(self, orjson.dumps(frame), frame)

    async def _send_to(self, target: Connection, data: bytes, frame: dict[str, Any]) -> None:
        # Counted when it goes on the wire: websockets writes the frame whenever the
        # connection is OPEN on entry, even if send() then raises because the client's
        # close arrived meanwhile (the client still reads it while closing).
        written = target.conn.protocol.state is OPEN
        try:
            await target.conn.send(data, text=True)
        except ConnectionClosed:
            pass
        if written:
            self._count(frame)

    def _count(self, frame: dict[str, Any]) -> None:
        stats = self.hub.stats
        stats.sent[frame["class"]] += 1
        code = frame["code"]
        if code >= 400:
            body = frame["body"]
            stats.errors[str(body.get("errorCode", code)) if isinstance(body, dict) else str(code)] += 1

    async def _respond(self, cls: str, code: int, body: Any, tracing: Any = None) -> None:
        frame: dict[str, Any] = {"type": "response", "class": cls, "code": code, "body": body}
        if tracing is not None:
            frame["tracingId"] = tracing
        await self._send(frame)

    async def _error(self, code: int, text: str, tracing: Any = None) -> None:
        await self._respond("string", code, text, tracing)

    async def _too_many(self, retry_after: int, text: str, tracing: Any) -> None:
        await self._respond("TooManyRequestsErrorMessage", 429,
                            {"retryAfter": retry_after, "errorCode": 4029, "errorMessage": text}, tracing)

    async def _push_to_session(self, frame: dict[str, Any]) -> None:
        """Send a push to every socket of this session (only this one if detached)."""
        targets = list(self.guest.conns) if self.guest is not None else [self]
        data = orjson.dumps(frame)
        for target in targets:
            await self._send_to(target, data, frame)

    # --- receiving -------------------------------------------------------------------

    async def _dispatch(self, raw: Any) -> bool:
        """Answer one client frame; True once the socket is closed."""
        self.last_frame = self.loop.time()
        stats = self.hub.stats
        frame: Any = None
        if isinstance(raw, str):
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
        if not isinstance(frame, dict):
            stats.received["invalid"] += 1
            if not self.detached:
                await self._error(400, "Request is not a JSON object")
            return False
        action = frame.get("action")
        stats.received[action if action in ACTIONS else "other"] += 1
        if self.detached:
            return False
        tracing = frame.get("tracingId")
        if action == "configureSession":
            return await self._configure(frame, tracing)
        if action == "echo":
            await self._echo(frame, tracing)
            return False
        if action not in ACTIONS:
            await self._error(400, "Invalid action", tracing)
            return False
        if action == "closeSession" and self.guest is None:
            return False  # never answered; after a Presence Clear the session is already gone
        if self.guest is None or frame.get("token") != self.token:
            if self.expired:
                await self._error(4006, "session expired", tracing)
            else:
                await self._error(4007, "session not found", tracing)
            return False
        self.guest.last_activity = self.loop.time()
        if action == "onMessage":
            await self._on_message(frame, tracing)
        elif action == "closeSession":
            self._close_session(frame)
        else:  # getJwt
            await self._respond("JwtResponse", 200, {"jwt": f"loadkit.{uuid.uuid4().hex}",
                                                     "exp": int(time.time()) + 3600}, tracing)
        return False

    async def _configure(self, frame: dict[str, Any], tracing: Any) -> bool:
        s = self.settings
        token = frame.get("token")
        deployment = frame.get("deploymentId")
        url_deployment = self.admission.deployment_id
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            return await self._refuse_configure(400, "Invalid token", tracing)
        if (not isinstance(deployment, str) or not deployment
                or (url_deployment is not None and deployment != url_deployment)
                or (s.deployments and deployment not in s.deployments)):
            self.hub.stats.deployment_not_found += 1
            return await self._refuse_configure(400, "Deployment not found", tracing)
        if self.guest is not None and token == self.token:  # configured twice on one socket
            await self._session_response(False, tracing)
            return False
        if self.guest is not None:
            self.hub.leave(self)
        gs, new = self.hub.join(token, self, frame.get("startNew") is True)
        self.token = token
        self.guest = gs
        self.expired = False
        if len(gs.conns) > s.max_connections_per_token:
            victim = gs.conns[0] if s.evict == "oldest" else self
            gs.conns.remove(victim)
            victim.guest = None
            self.hub.stats.evicted += 1
            if victim is self:  # refused: the newest socket is the one that goes
                victim.notify("evicted")
                return False
            victim.notify("evicted")
        if new:
            self.hub.stats.sessions_new += 1
        else:
            self.hub.stats.sessions_resumed += 1
        await self._session_response(new, tracing)
        if not self.configured:
            self.configured = True
            self.phase = "authenticated"
            self.gw.stats.authenticated += 1
            if self.plan.drop_after_s is not None:
                self.drop_at = self.loop.time() + self.plan.drop_after_s
        return False

    async def _session_response(self, new: bool, tracing: Any) -> None:
        body: dict[str, Any] = {"connected": True, "newSession": new, "readOnly": False,
                                "maxCustomDataBytes": 2048}
        ttl = self.settings.session_ttl_s
        if ttl > 0:
            body["durationSeconds"] = int(ttl)
            body["expirationDate"] = int(time.time() + ttl)
        await self._respond("SessionResponse", 200, body, tracing)

    async def _refuse_configure(self, code: int, text: str, tracing: Any) -> bool:
        await self._error(code, text, tracing)
        close = self.settings.deployment_error_close_code
        if close and not self.configured:
            await self.conn.close(close, text.lower())
            return True
        return False

    async def _echo(self, frame: dict[str, Any], tracing: Any) -> None:
        s = self.settings
        if not frame.get("token") and s.echo_without_token == "error":
            await self._error(400, "token is required", tracing)
            return
        now = self.loop.time()
        limit = s.echo_limit_per_min
        if limit:
            while self.echoes and self.echoes[0] <= now - 60.0:
                self.echoes.popleft()
            if len(self.echoes) >= limit:
                self.hub.stats.echo_limited += 1
                await self._too_many(max(1, math.ceil(self.echoes[0] + 60.0 - now)),
                                     "Echo rate too high for this connection", tracing)
                return
            self.echoes.append(now)
        if self.guest is not None:
            self.guest.last_activity = now
        message = frame.get("message")
        body: dict[str, Any] = {"text": "ping", "type": "Text", "direction": "Inbound", "id": str(uuid.uuid4())}
        if isinstance(message, dict):
            if isinstance(message.get("text"), str):
                body["text"] = message["text"]
            if isinstance(message.get("metadata"), dict):
                body["metadata"] = message["metadata"]
        await self._respond("StructuredMessage", 200, body, tracing)

    async def _on_message(self, frame: dict[str, Any], tracing: Any) -> None:
        s = self.settings
        gs = self.guest
        assert gs is not None
        message = frame.get("message")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "Text":
            text = message.get("text")  # type: ignore[union-attr]
            if not isinstance(text, str):
                await self._error(400, "Text message needs text", tracing)
                return
            if len(text) > s.max_text_length:
                self.hub.stats.text_too_long += 1
                await self._error(4011, "message too long", tracing)
                return
        elif kind == "Event":
            events = message.get("events")  # type: ignore[union-attr]
            if not isinstance(events, list) or not events:
                await self._error(400, "Event message needs events", tracing)
                return
        else:
            await self._error(400, "Invalid message type", tracing)
            return
        now = self.loop.time()
        while gs.window and gs.window[0] <= now - 1.0:
            gs.window.popleft()
        if s.rate_limit_per_s and len(gs.window) >= s.rate_limit_per_s:
            self.hub.stats.rate_limited += 1
            await self._too_many(max(1, math.ceil(gs.window[0] + 1.0 - now)),
                                 "Message rate too high for this session", tracing)
            return
        gs.window.append(now)
        body: dict[str, Any] = {"type": kind, "direction": "Inbound", "id": str(uuid.uuid4()),
                                "channel": {"time": _iso_now()}}
        if kind == "Text":
            body["text"] = text
        else:
            body["events"] = events
        echo: dict[str, Any] = {"type": "message", "class": "StructuredMessage", "code": 200, "body": body}
        if tracing is not None:
            echo["tracingId"] = tracing
        await self._push_to_session(echo)
        if kind == "Event":
            if any(isinstance(e, dict) and e.get("eventType") == "Presence"
                   and isinstance(e.get("presence"), dict) and e["presence"].get("type") == "Clear"
                   for e in events):
                self.hub.stats.cleared += 1
                self.hub.end(gs, "cleared")
            return
        if self.gw.settings.agent_replies:
            delay = next(self.message_plans).agent_delay_s
            task = self.loop.create_task(self._bot_reply(delay))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _bot_reply(self, delay: float) -> None:
        await asyncio.sleep(delay)
        frame = {"type": "message", "class": "StructuredMessage", "code": 200,
                 "body": {"type": "Text", "text": BOT_TEXT, "direction": "Outbound", "id": str(uuid.uuid4()),
                          "channel": {"time": _iso_now(), "type": "Private"}, "originatingEntity": "Bot"}}
        await self._push_to_session(frame)

    def _close_session(self, frame: dict[str, Any]) -> None:
        """closeSession: no answer; the token's other sockets get ConnectionClosedEvent (if asked)."""
        gs = self.guest
        assert gs is not None
        if frame.get("closeAllConnections") is True:
            self.hub.stats.closed_by_close_session += sum(1 for c in gs.conns if c is not self)
            self.hub.end(gs, "closed", exclude=self)
        else:
            self.hub.leave(self)
