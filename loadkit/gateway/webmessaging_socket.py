"""One Web Messaging socket's life on the reference gateway: state, deadlines, notices, sending.

Why apart from what it answers (``webmessaging.py``): a socket's life is the
same whatever the request (a receive deadline that notices from other
sockets reschedule, idle and age limits, the session's TTL, sends that are
counted when they go on the wire), while the answers are the protocol's
contract, request by request. ``webmessaging.Connection`` is this socket
with its answers.
"""

from __future__ import annotations

import asyncio
import collections
import math
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN

from . import webmessaging_frames as frames
from .connection import GatewayConnection
from .faults import SessionPlan
from .limiter import SlidingWindow
from .sessions import Context, Session
from .webmessaging_hub import Hub, TokenSession


#: The echo limit's sliding window: a minute less a second. Clients pace their
#: echo at 30 s (2 a minute, the documented most); measured at arrival, two
#: echoes 60 s apart can land a few milliseconds inside a full minute, and a
#: client keeping the documented cadence must never be refused for it.
ECHO_WINDOW_S = 59.0

__all__ = ["Admission", "Socket"]


@dataclass(frozen=True, slots=True)
class Admission:
    """What the upgrade request said, kept for the socket's session."""

    deployment_id: str | None
    origin: str | None
    application: str | None


class Socket(Session):
    """One Web Messaging socket's life, from the upgrade to the recorded close: its state,
    deadlines, notices from other sockets and sending. What it answers to each request is
    ``webmessaging.Connection``'s (``_dispatch``)."""

    def __init__(self, ctx: Context, hub: Hub, conn: GatewayConnection, admission: Admission,
                 plan: SessionPlan) -> None:
        super().__init__(ctx, conn, plan)
        self.hub = hub
        self.settings = hub.settings
        self.admission = admission
        self.guest: TokenSession | None = None
        self.token: str | None = None
        self.configured = False
        self.expired = False       # the session expired and the socket stayed open
        self.detached = False      # ConnectionClosedEvent without a close: answers nothing more
        self.notices: collections.deque[str] = collections.deque()
        self.opened_at = self.loop.time()
        self.last_frame = self.opened_at
        self.drop_at = math.inf
        self.echoes = SlidingWindow(self.settings.echo_limit_per_min, ECHO_WINDOW_S)
        #: Presence Clears refused so far by the goodbye_refused fault
        self.goodbye_refusals = 0
        self._timeout: asyncio.Timeout | None = None

    # --- life -------------------------------------------------------------------

    def finish(self) -> None:
        self.hub.leave(self)

    def notify(self, notice: str) -> None:
        """Called by another socket's task: act on ``notice`` as soon as this task can."""
        self.notices.append(notice)
        if self._timeout is not None:
            self._timeout.reschedule(self.loop.time())

    async def serve(self) -> None:
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
            await self.drop()
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
        await self._send(frames.notice(notice))
        if frames.NOTICES[notice] == "ConnectionClosedEvent":
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

    # --- sending ------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        """Send one frame; once the client has started closing, drop it silently.

        A client's last frames (the goodbye) and its close frame arrive
        together: websockets then refuses to send, but still hands over the
        frames received before the close. They are processed and counted
        (a Presence Clear still ends the session); only their answers are lost.
        """
        await self._send_to(self, orjson.dumps(frame), frame)

    async def _send_to(self, target: Socket, data: bytes, frame: dict[str, Any]) -> None:
        # Counted when it goes on the wire: websockets writes the frame whenever the
        # connection is OPEN on entry, even if send() then raises because the client's
        # close arrived meanwhile (the client still reads it while closing).
        written = target.conn.protocol.state is OPEN
        try:
            await target.conn.send(data, text=True)
        except ConnectionClosed:
            pass
        if written:
            self.hub.stats.frame_sent(frame)

    async def _error(self, code: int, text: str, tracing: Any = None) -> None:
        await self._send(frames.response("string", code, text, tracing))

    async def _push_to_session(self, frame: dict[str, Any]) -> None:
        """Send a push to every socket of this session (only this one if detached)."""
        targets = [c for c in self.guest.conns if isinstance(c, Socket)] if self.guest is not None else [self]
        data = orjson.dumps(frame)
        for target in targets:
            await self._send_to(target, data, frame)

    async def _dispatch(self, raw: Any) -> bool:
        """Answer one client frame; True once the socket is closed (``webmessaging.Connection``)."""
        raise NotImplementedError
