"""Web Messaging's state across sockets: sessions by token, and the protocol's own counters.

Why apart from the socket code (``webmessaging.py``): a Web Messaging session
outlives its sockets (a reconnect with the same token answers ``newSession:
false``), and up to three sockets share one; that shared state, and what one
socket's action does to the others, lives here. The sockets learn of it
through *notices* (``Member.notify``): another socket's task never closes a
socket itself, so no close is ever abandoned half-way.

Opened, authenticated and closed sockets go to the gateway's shared ground
truth (``/_gateway/stats``) like guest sessions; what only this protocol has is
counted here (``GET /_gateway/webmessaging``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Protocol

from .limiter import SlidingWindow
from .settings import WebMessagingSettings

__all__ = ["ACTIONS", "Hub", "Member", "TokenSession", "WebMessagingStats"]

ACTIONS = ("configureSession", "onMessage", "echo", "closeSession", "getJwt")


class Member(Protocol):
    """A socket as the hub sees it: it belongs to at most one session and can be told why it ends."""

    guest: TokenSession | None

    def notify(self, notice: str) -> None: ...


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
        self.close_session_answered = 0
        #: the goodbye faults: requests ignored, answers delayed, Presence Clears refused (429)
        self.goodbye_unanswered = 0
        self.goodbye_delayed = 0
        self.goodbye_refused = 0

    def frame_sent(self, frame: dict[str, Any]) -> None:
        """Count a frame that went on the wire, by class, and by error code if it is an error."""
        self.sent[frame["class"]] += 1
        code = frame["code"]
        if code >= 400:
            body = frame["body"]
            self.errors[str(body.get("errorCode", code)) if isinstance(body, dict) else str(code)] += 1

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
            "close_session_answered": self.close_session_answered,
            "goodbye_faults": {"unanswered": self.goodbye_unanswered, "delayed": self.goodbye_delayed,
                               "refused": self.goodbye_refused},
        }


class TokenSession:
    """The session one token names, across its sockets."""

    __slots__ = ("token", "conns", "window", "last_activity", "forget")

    def __init__(self, token: str, now: float, rate_limit_per_s: int) -> None:
        self.token = token
        self.conns: list[Member] = []
        self.window = SlidingWindow(rate_limit_per_s)  # onMessage, per session
        self.last_activity = now
        self.forget: asyncio.TimerHandle | None = None


class Hub:
    """Web Messaging for one gateway: sessions by token, protocol counters."""

    def __init__(self, settings: WebMessagingSettings) -> None:
        self.settings = settings
        self.stats = WebMessagingStats()
        self.sessions: dict[str, TokenSession] = {}
        self.loop = asyncio.get_running_loop()

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(len(self.sessions))

    def join(self, token: str, conn: Member, start_new: bool) -> tuple[TokenSession, bool]:
        """The session ``token`` names (a new one if none, or it expired); True if new."""
        now = self.loop.time()
        ttl = self.settings.session_ttl_s
        gs = self.sessions.get(token)
        new = gs is None or (ttl > 0 and now - gs.last_activity >= ttl) or start_new
        if gs is not None and new:
            self.end(gs, "closed" if start_new else "expired")
            gs = None
        if gs is None:
            gs = self.sessions[token] = TokenSession(token, now, self.settings.rate_limit_per_s)
        if gs.forget is not None:
            gs.forget.cancel()
            gs.forget = None
        gs.last_activity = now
        gs.conns.append(conn)
        return gs, new

    def leave(self, conn: Member) -> None:
        """``conn`` no longer belongs to its session; forget an empty session after a while."""
        gs = conn.guest
        conn.guest = None
        if gs is None:
            return
        if conn in gs.conns:
            gs.conns.remove(conn)
        if not gs.conns and self.sessions.get(gs.token) is gs and gs.forget is None:
            gs.forget = self.loop.call_later(self.settings.resume_window_s, self._forget, gs)

    def _forget(self, gs: TokenSession) -> None:
        gs.forget = None
        if not gs.conns and self.sessions.get(gs.token) is gs:
            del self.sessions[gs.token]

    def end(self, gs: TokenSession, notice: str, exclude: Member | None = None) -> None:
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
