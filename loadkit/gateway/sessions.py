"""What every WebSocket session on the gateway shares: its context, its end, its record.

Why a base class: the guest and Web Messaging sessions speak different
protocols but must end the same way, because the ground truth depends on it.
Every session runs as one task; its delayed frames are child tasks that are
cancelled when it ends; whatever path it took, the connection is closed (a
bug closes 1011, never leaves a socket open) and the close record is read from
the close frames that really crossed the wire (``stats.close_record``).

A subclass writes ``serve()`` as straight-line protocol code, sets ``phase``
to ``"authenticated"`` when the protocol says so, and applies its fault plan
(``self.plan``, ``self.messages``) through ``inject`` (see its docstring for
where each fault applies).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from . import inject
from .connection import GatewayConnection
from .faults import FaultPlan, MessagePlan, SessionPlan
from .settings import GatewaySettings
from .stats import CloseRecord, GatewayStats, Phase, close_record
from .tokens import TokenSigner

__all__ = ["Admit", "CLOSES", "Context", "Session", "SessionFactory"]

log = logging.getLogger("loadkit.gateway")

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
"""Close codes and reasons from the guest contract's table, by what they mean."""


@dataclass(frozen=True)
class Context:
    """What a session may use of its gateway (and nothing else: no back-reference)."""

    settings: GatewaySettings
    stats: GatewayStats
    faults: FaultPlan
    signer: TokenSigner
    degraded: Callable[[], bool]
    """True once ``faults.degrade_at_s`` has passed (a gateway getting worse during a soak)."""


class Session(abc.ABC):
    """One WebSocket session, from the first frame to the recorded close."""

    label = "session"

    def __init__(self, ctx: Context, conn: GatewayConnection, plan: SessionPlan) -> None:
        self.ctx = ctx
        self.conn = conn
        self.plan = plan
        self.loop = asyncio.get_running_loop()
        self._phase: Phase = "pre_auth"
        #: loop time at which ``phase`` became "authenticated" (the start of the session's age)
        self.authenticated_at: float | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.messages = ctx.faults.messages(plan.seq)

    @property
    def phase(self) -> Phase:
        """``pre_auth`` until the protocol's auth answer was sent, then ``authenticated``."""
        return self._phase

    @phase.setter
    def phase(self, value: Phase) -> None:
        # Kept here, not in each protocol's code, so every session type times its age the same way.
        if value == "authenticated" and self.authenticated_at is None:
            self.authenticated_at = self.loop.time()
        self._phase = value

    def answered_auth(self, sent_at: float) -> None:
        """Enter ``authenticated``, the age counting from ``sent_at``: loop time taken just before the answer's write.

        Not the time after it: the coroutine resumes after the write only when the loop gets to it, on a
        busy machine milliseconds after the guest read the answer, and the age would come out short.
        """
        if self.authenticated_at is None:
            self.authenticated_at = sent_at
        self.phase = "authenticated"

    def age_at_end(self) -> float | None:
        """Seconds from the auth answer to the connection's close (None if never authenticated)."""
        if self.authenticated_at is None:
            return None
        end = self.conn.closing_at if self.conn.closing_at is not None else self.loop.time()
        return max(0.0, end - self.authenticated_at)

    @abc.abstractmethod
    async def serve(self) -> None:
        """The protocol, until the session is closed (a ConnectionClosed may end it too)."""

    def finish(self) -> None:  # noqa: B027 (a hook: a session overrides it only if it has something to finish)
        """Called once the session is over, before its tasks are cancelled."""

    async def run(self) -> CloseRecord:
        """Run the session and return how it ended on the wire."""
        try:
            await self.serve()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("%s %s failed", self.label, self.plan.seq)
            await self.conn.close(*CLOSES["internal"])
        finally:
            self.finish()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.conn.protocol.state is OPEN:  # every path closes; this is a bug net
                log.error("%s %s ended without a close", self.label, self.plan.seq)
                await self.conn.close(*CLOSES["internal"])
            await self.conn.wait_closed()
        p = self.conn.protocol
        return close_record(p.close_sent, p.close_rcvd, p.close_rcvd_then_sent, self.phase)

    def next_message_plan(self) -> MessagePlan:
        """The fault plan of this session's next accepted message."""
        return next(self.messages)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` beside the session; it is cancelled when the session ends."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drop(self) -> None:
        """The planned drop (faults.drop_fraction): a close with the planned code, or a TCP reset."""
        await inject.drop(self.conn, self.plan.drop_code, self.ctx.stats)


SessionFactory = Callable[[SessionPlan], Session]
"""What an endpoint's admission hands the connection: opens its session once the upgrade is accepted."""

Admit = Callable[[GatewayConnection, Request], "Response | SessionFactory"]
"""An endpoint's own admission of an upgrade: a Response refuses it, a SessionFactory accepts it."""
