"""The guest protocol's session (``/api/v2/guest/websocket``): auth, then chat.

Straight-line code around a single ``recv()``: deadlines (auth, idle, token
expiry, the planned drop) are checked around it, so a session costs one task
plus one per delayed outgoing frame; nothing polls. What the contract
(``docs/protocols/guest-protocol.md``) leaves to configuration is a setting;
what the fault plan decided is applied where the comments say.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from . import anomalies, custom
from .connection import GatewayConnection
from .faults import SessionPlan
from .limiter import SlidingWindow
from .sessions import CLOSES, Admit, Context, Session, SessionFactory
from .tokens import TokenError

__all__ = ["WS_PATH", "GuestSession", "admission"]

WS_PATH = "/api/v2/guest/websocket"

_TOKEN_ERRORS = {TokenError.FORGED: "invalid token", TokenError.EXPIRED: "token expired",
                 TokenError.GUEST_MISMATCH: "token was issued to another guestId"}


class _Invalid:
    """A frame that is not a UTF-8 JSON text frame."""


INVALID = _Invalid()


def admission(ctx: Context) -> Admit:
    """The guest endpoint adds no check of its own to the gateway's admission."""

    def admit(conn: GatewayConnection, request: Request) -> Response | SessionFactory:
        return lambda plan: GuestSession(ctx, conn, plan)

    return admit


class GuestSession(Session):
    """One guest session, from the auth frame to the recorded close."""

    label = "session"

    def __init__(self, ctx: Context, conn: GatewayConnection, plan: SessionPlan) -> None:
        super().__init__(ctx, conn, plan)
        self.settings = ctx.settings
        self.stats = ctx.stats
        self.window = SlidingWindow(self.settings.rate_limit_per_s)
        self.strikes = 0
        self.replies = 0
        self.last_frame = self.loop.time()
        self.expires_at = math.inf  # loop time
        self.flood_at: float | None = None  # loop time of the ping flood's write, until its first pong

    async def serve(self) -> None:
        if await self.authenticate():
            await self.chat()

    # --- helpers -------------------------------------------------------------

    async def send(self, frame: dict[str, Any], error_code: int | None = None) -> None:
        await self.conn.send(orjson.dumps(frame), text=True)
        self.stats.frame_sent(frame["type"], error_code)

    async def send_error(self, code: int, message: str, **extra: Any) -> None:
        await self.send({"type": "error", "code": code, "message": message, **extra}, code)

    async def send_later(self, delay: float, frame: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        try:
            await self.send(frame)
        except ConnectionClosed:
            pass

    async def pause(self, seconds: float) -> bool:
        """Sleep, but wake when the connection closes; True if it is still open."""
        await asyncio.wait([self.conn.connection_lost_waiter], timeout=seconds)
        return self.conn.protocol.state is OPEN

    async def receive(self, deadline: float) -> Any:
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
                self.stats.frame_received(None)  # a text frame that was not UTF-8: closed 1007
            raise
        self.last_frame = self.loop.time()
        frame: Any = INVALID
        if isinstance(raw, str):
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
        self.stats.frame_received(frame.get("type") if isinstance(frame, dict) else None)
        return frame

    # --- phases ----------------------------------------------------------------

    async def authenticate(self) -> bool:
        """First frame must be a valid auth frame; True once auth_ok is sent."""
        try:
            frame = await self.receive(self.loop.time() + self.settings.auth_deadline_s)
        except TimeoutError:
            await self.conn.close(*CLOSES["auth_timeout"])
            return False
        if frame is INVALID:
            await self.conn.close(*CLOSES["invalid"])
            return False
        credentials = custom.auth_credentials(frame, self.settings.auth_frame)
        if credentials is None:
            await self.reject(4001, custom.expected_auth(self.settings.auth_frame))
            return False
        guest_id, token = credentials
        verdict = self.ctx.signer.verify(token, guest_id, time.time())
        if verdict.error is TokenError.MISSING_SCOPE:
            await self.reject(4003, "token lacks the guest:chat scope")
            return False
        if verdict.error is not None:
            await self.reject(4001, _TOKEN_ERRORS[verdict.error])
            return False
        # Fault decisions of the auth step: silent close, auth latency (degraded or not).
        if self.plan.silent_close:
            self.stats.faults["silent_close_after_auth"] += 1
            await self.conn.close(*CLOSES["auth_rejected"])
            return False
        delay = self.plan.auth_delay_s
        if self.ctx.degraded():
            delay = self.plan.degraded_auth_delay_s
            self.stats.faults["auth_degraded"] += 1
        if delay > 0:
            self.stats.faults["auth_delayed"] += 1
            if not await self.pause(delay):
                return False
        assert verdict.claims is not None
        self.expires_at = self.loop.time() + (verdict.claims.expires_at - time.time())
        idle = self.settings.idle_timeout_s
        sent_at = self.loop.time()
        await self.send_auth_ok({"type": "auth_ok", "guestId": guest_id, "sessionId": str(uuid.uuid4()),
                                 "idleTimeout": int(idle) if idle == int(idle) else idle})
        self.answered_auth(sent_at)
        self.stats.authenticated += 1
        return True

    async def send_auth_ok(self, frame: dict[str, Any]) -> None:
        """Answer the auth frame; with the planned anomaly or ping flood, in one raw write.

        An anomaly is counted when its bytes are handed to the socket: a
        session whose client closed first gets none (``send_raw`` then raises
        ConnectionClosed, as ``send`` would).
        """
        kind, pings = self.plan.anomaly, self.plan.ping_flood
        if kind is None and not pings:
            await self.send(frame)
            return
        data = anomalies.auth_ok_write(orjson.dumps(frame), kind, pings)
        if self.conn.protocol.state is OPEN:  # so send_raw writes before it first waits: count it now
            now = self.loop.time()
            self.stats.frame_sent("auth_ok")
            if kind is not None:
                self.stats.anomalies[kind] += 1
            if pings:
                self.conn.on_pong, self.flood_at = self.flood_pong, now
                self.stats.ping_flood.flooded(pings, (now - self.last_frame) * 1000)
        await self.conn.send_raw(data)

    def flood_pong(self) -> None:
        """A pong to the flood: the first is timed from the write, every one is counted."""
        at, self.flood_at = self.flood_at, None
        self.stats.ping_flood.pong(None if at is None else (self.loop.time() - at) * 1000)

    async def reject(self, code: int, message: str) -> None:
        """Refuse an auth attempt: silently (1000 or 4003) or with an error frame first."""
        close = CLOSES["forbidden"] if code == 4003 else CLOSES["unauthorized"]
        if self.settings.auth_failure == "explicit":
            await self.send_error(code, message)
        elif code != 4003:
            close = CLOSES["auth_rejected"]
        await self.conn.close(*close)

    async def chat(self) -> None:
        """Authenticated loop: answer frames until a deadline or a close ends it."""
        drop_at = math.inf
        if self.plan.drop_after_s is not None:
            drop_at = self.loop.time() + self.plan.drop_after_s
        while True:
            idle_at = self.last_frame + self.settings.idle_timeout_s
            try:
                frame = await self.receive(min(idle_at, self.expires_at, drop_at))
            except TimeoutError:
                first = min(idle_at, self.expires_at, drop_at)
                if first == drop_at:
                    await self.drop()
                elif first == self.expires_at:
                    self.stats.faults["sessions_expired"] += 1
                    await self.send({"type": "session_expired"})
                    await self.conn.close(*CLOSES["expired"])
                else:
                    await self.conn.close(*CLOSES["idle"])
                return
            kind = frame.get("type") if isinstance(frame, dict) else None
            if frame is INVALID:
                await self.conn.close(*CLOSES["invalid"])
                return
            if kind == "ping":
                await self.send({"type": "pong", "id": frame.get("id")})
            elif kind == "message":
                if not await self.on_message(frame):
                    return
            elif kind != "typing":
                await self.send_error(4400, "malformed frame: unknown or missing type")

    async def on_message(self, frame: dict[str, Any]) -> bool:
        """Ack (and maybe answer) one chat message; False if the session was closed."""
        message_id, text = frame.get("id"), frame.get("text")
        if not isinstance(message_id, (str, int)) or isinstance(message_id, bool) or not isinstance(text, str):
            await self.send_error(4400, "malformed frame: message needs id and text")
            return True
        if len(text) > self.settings.max_text_length:
            await self.send_error(4011, f"message longer than {self.settings.max_text_length} characters",
                                  id=message_id)
            return True
        retry = self.window.admit(self.loop.time())
        if retry is not None:
            self.strikes += 1
            await self.send_error(4029, "rate limited", retryAfter=retry, id=message_id)
            if self.settings.rate_limit_strikes and self.strikes >= self.settings.rate_limit_strikes:
                await self.conn.close(*CLOSES["rate_limit"])
                return False
            return True
        self.strikes = 0
        # Fault decisions of one accepted message: ack delay (out of order or not), agent delay.
        mp = self.next_message_plan()
        ack = {"type": "ack", "id": message_id, "ts": int(time.time() * 1000)}
        if mp.ack_delay_s > 0:
            self.stats.faults["acks_delayed"] += 1
            self.stats.faults["acks_out_of_order"] += mp.out_of_order
            self.spawn(self.send_later(mp.ack_delay_s, ack))
        else:
            await self.send(ack)
        if self.settings.agent_replies:
            self.replies += 1
            self.stats.faults["agent_replies_delayed"] += self.settings.faults.agent_delay.enabled
            self.spawn(self.send_later(mp.agent_delay_s, {
                "type": "message", "from": "agent", "id": f"a-{self.replies}",
                "text": f"Agent reply to: {text[:200]}", "replyTo": message_id}))
        return True
