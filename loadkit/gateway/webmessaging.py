"""Genesys Web Messaging on the reference gateway: one socket on ``/v1?deploymentId=…``.

Why here: the ``webmessaging`` profile is only believable once it has run
against a server that does what ``webmessaging-protocol.md`` says, including
the parts a real deployment would punish a load test for (the 2 per second
``onMessage`` limit, the 3-sockets-per-token rule). Everything that document
marks UNKNOWN is a setting (``[webmessaging]`` in ``settings.py``), never a
guess in this code.

- ``admission``: the endpoint's own check of an upgrade (Origin allow-list →
  403), and what it remembers of the request (deploymentId, application);
- ``Connection``: one socket's answers, request by request (configureSession,
  echo, onMessage with its Presence Clear, closeSession, getJwt), over its
  life in ``webmessaging_socket.Socket``: straight-line code around one
  ``recv()``. Another socket's action that concerns this one (an eviction, a
  cleared or closed session, an expiry) arrives as a *notice* from the hub
  (``webmessaging_hub.py``): it reschedules this socket's receive deadline to
  now, so the socket's own task sends the event and closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.http11 import Request, Response

from . import webmessaging_frames as frames
from .connection import GatewayConnection, refuse
from .sessions import Admit, Context, SessionFactory
from .webmessaging_hub import ACTIONS, Hub
from .webmessaging_socket import Admission, Socket

__all__ = ["WM_PATH", "STATS_PATH", "Admission", "Connection", "admission"]

log = logging.getLogger("loadkit.gateway")

WM_PATH = "/v1"
STATS_PATH = "/_gateway/webmessaging"
MAX_TOKEN_CHARS = 2048


def admission(ctx: Context, hub: Hub) -> Admit:
    """Check the Origin; remember deploymentId and application for the socket."""

    def admit(conn: GatewayConnection, request: Request) -> Response | SessionFactory:
        origin = request.headers.get("Origin")
        allowed = hub.settings.origins
        if allowed and origin not in allowed:
            hub.stats.origin_refused += 1
            return refuse(ctx.stats, 403, "forbidden", "origin not allowed for this deployment")
        query = parse_qs(urlsplit(request.path).query)
        said = Admission(query.get("deploymentId", [None])[0], origin, query.get("application", [None])[0])
        return lambda plan: Connection(ctx, hub, conn, said, plan)

    return admit


class Connection(Socket):
    """One Web Messaging socket with its answers: each request as ``webmessaging-protocol.md`` says."""

    label = "webmessaging session"

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
        if action == "closeSession" and self.guest is None and self.token is not None \
                and frame.get("token") == self.token and not self.expired:
            # This socket's session already ended (its Presence Clear, another socket's
            # closeSession): closing it again is done, so it is answered as done.
            await self._close_session(frame, tracing)
            return False
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
            await self._close_session(frame, tracing)
        else:  # getJwt
            await self._send(frames.response("JwtResponse", 200, frames.jwt_body(), tracing))
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
            await self._send(frames.response("SessionResponse", 200, frames.session_body(False, s.session_ttl_s),
                                             tracing))
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
        sent_at = self.loop.time()
        await self._send(frames.response("SessionResponse", 200, frames.session_body(new, s.session_ttl_s), tracing))
        if not self.configured:
            self.configured = True
            self.answered_auth(sent_at)
            self.ctx.stats.authenticated += 1
            if self.plan.drop_after_s is not None:
                self.drop_at = self.loop.time() + self.plan.drop_after_s
        return False

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
        retry = self.echoes.admit(now)
        if retry is not None:
            self.hub.stats.echo_limited += 1
            await self._send(frames.too_many(retry, "Echo rate too high for this connection", tracing))
            return
        if self.guest is not None:
            self.guest.last_activity = now
        await self._send(frames.response("StructuredMessage", 200, frames.echo_body(frame.get("message")), tracing))

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
        clear = kind == "Event" and frames.is_presence_clear(events)
        if clear and self._goodbye_fault(tracing) is not None:
            await self._send(frames.too_many(self.plan.goodbye_retry_after_s, "Message rate too high for this session",
                                             tracing))
            return
        if clear and self.plan.goodbye_unanswered:
            self.hub.stats.goodbye_unanswered += 1
            return
        retry = gs.window.admit(self.loop.time())
        if retry is not None:
            self.hub.stats.rate_limited += 1
            await self._send(frames.too_many(retry, "Message rate too high for this session", tracing))
            return
        await self._push_to_session(frames.inbound(kind, text if kind == "Text" else events, tracing))
        if kind == "Event":
            if clear:
                self.hub.stats.cleared += 1
                delay = self.plan.goodbye_delay_s
                if delay > 0:  # the others are told now; this socket's answer comes late
                    self.hub.end(gs, "cleared", exclude=self)
                    self.hub.stats.goodbye_delayed += 1
                    self.spawn(self._later(delay, frames.notice("cleared")))
                else:
                    self.hub.end(gs, "cleared")
            return
        if self.ctx.settings.agent_replies:
            self.spawn(self._bot_reply(self.next_message_plan().agent_delay_s))

    async def _bot_reply(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._push_to_session(frames.bot_reply())

    def _goodbye_fault(self, tracing: Any) -> int | None:
        """The planned refusals of this session's Presence Clear: the retryAfter of one more, or None."""
        if self.goodbye_refusals >= self.plan.goodbye_refusals:
            return None
        self.goodbye_refusals += 1
        self.hub.stats.goodbye_refused += 1
        return self.plan.goodbye_retry_after_s

    async def _later(self, delay: float, frame: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        await self._send(frame)

    async def _close_session(self, frame: dict[str, Any], tracing: Any) -> None:
        """closeSession: answered ``SessionResponse connected:false`` (the SDKs wait for it);
        with ``closeAllConnections`` the token's other sockets get ConnectionClosedEvent."""
        if self.plan.goodbye_unanswered:
            self.hub.stats.goodbye_unanswered += 1
            return
        gs = self.guest
        if gs is not None and frame.get("closeAllConnections") is True:
            self.hub.stats.closed_by_close_session += sum(1 for c in gs.conns if c is not self)
            self.hub.end(gs, "closed", exclude=self)
        elif gs is not None:
            self.hub.leave(self)
        self.hub.stats.close_session_answered += 1
        answer = frames.response("SessionResponse", 200, frames.closed_session_body(), tracing)
        delay = self.plan.goodbye_delay_s
        if delay > 0:
            self.hub.stats.goodbye_delayed += 1
            self.spawn(self._later(delay, answer))
        else:
            await self._send(answer)
