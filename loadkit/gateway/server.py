"""The reference gateway: a table of endpoints on one port, with injectable faults.

Why a reference gateway at all: a harness that reports close codes, phases and
latencies is only believable if it has been run against a target whose
behaviour is known exactly. This server speaks ``guest-protocol.md`` and
``webmessaging-protocol.md`` to the letter, misbehaves only when its fault
plan says so, and counts what it did (``/_gateway/stats``) so tests can compare
both sides.

Every connection goes the same way (``connection.py`` tells the two kinds
apart):

- a WebSocket upgrade: **path** (``Gateway.sockets``) → the endpoint's own
  **admission** (``sessions.Admit``: Origin for Web Messaging) → the gateway's
  admission (availability, the planned upgrade faults) → the endpoint's
  **session** (``guest.GuestSession``, ``webmessaging.Connection``) → its
  **close record**, counted in ``stats.GatewayStats``;
- a plain HTTP request: ``(path, method)`` → a handler (``Gateway.routes``)
  → an ``Answer``.
"""

from __future__ import annotations

import asyncio
import http
import logging
import math
import os
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from . import guest, webmessaging
from .cluster import Peers, PeerUnavailable
from .connection import AdmittedSession, Answer, GatewayConnection, HttpRequest, error, refuse
from .faults import FaultPlan
from .sessions import CLOSES, Admit, Context
from .settings import GatewaySettings
from .shared import Local, Shared
from .stats import GatewayStats, merge_snapshots
from .tokens import TokenSigner
from .webmessaging_hub import Hub

__all__ = ["CLOSES", "Gateway", "TOKEN_PATH", "WS_PATH"]

log = logging.getLogger("loadkit.gateway")

WS_PATH = guest.WS_PATH
TOKEN_PATH = "/api/v2/guests"
STATS_PATH = "/_gateway/stats"
HEALTH_PATH = "/_gateway/health"
RESTART_PATH = "/_gateway/restart"

Handler = Callable[[HttpRequest], "Answer | Awaitable[Answer]"]


class Gateway:
    """Owns settings, tokens, fault plan and stats; serves its endpoint table on one port."""

    def __init__(self, settings: GatewaySettings, shared: Shared | None = None, peers: Peers | None = None,
                 started_at: float | None = None) -> None:
        """One gateway process; ``shared``, ``peers`` and ``started_at`` make it one of several (``cluster``)."""
        assert settings.seed is not None, "resolve the seed before building a Gateway"
        self.settings = settings
        self.plan = FaultPlan(settings.faults, settings.seed, settings.agent_think_s)
        self.signer = TokenSigner(settings.secret or None)
        self.stats = GatewayStats()
        self.sessions: set[AdmittedSession] = set()
        #: session numbers, reserved upgrades + open sessions (max_connections), the token window
        self.shared = shared if shared is not None else Local(settings.token_rate_limit_per_s)
        self.peers = peers
        self.draining = False
        self.paused_until = 0.0  # loop time; upgrades get 503 before it (rolling restart)
        self.stopping = asyncio.Event()
        self.token_window = self.shared.token_window()
        self.background: set[asyncio.Task[Any]] = set()
        self.server: Server | None = None
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time() if started_at is None else started_at
        self.ctx = Context(settings, self.stats, self.plan, self.signer, self.degraded)
        self.webmessaging = Hub(settings.webmessaging)
        #: WebSocket endpoints: path → the endpoint's admission (which opens its session).
        self.sockets: dict[str, Admit] = {
            WS_PATH: guest.admission(self.ctx),
            webmessaging.WM_PATH: webmessaging.admission(self.ctx, self.webmessaging),
        }
        #: Plain HTTP endpoints: (path, method) → handler.
        self.routes: dict[tuple[str, str], Handler] = {
            (TOKEN_PATH, "POST"): self.issue_token,
            (STATS_PATH, "GET"): self.stats_answer,
            (HEALTH_PATH, "GET"): lambda request: Answer(200, {"status": "draining" if self.draining else "ok"}),
            (RESTART_PATH, "POST"): self.trigger_restart,
            (webmessaging.STATS_PATH, "GET"): self.webmessaging_answer,
        }
        if peers is not None:
            peers.ops.update(stats=self._local_stats, restart=self._local_restart)

    # --- lifecycle -------------------------------------------------------------

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen on ``host:port`` (0 = any free port) and return the bound port."""
        connection_class = type("BoundGatewayConnection", (GatewayConnection,), {"owner": self})
        self.server = await serve(
            self._handler, host, port,
            ssl=self._tls_context(),
            create_connection=connection_class,
            process_request=self.admit,
            compression=None,
            ping_interval=None,  # the protocol's app-level ping is the keepalive
            max_size=self.settings.max_frame_bytes,
            open_timeout=self.settings.open_timeout_s,
            close_timeout=self.settings.close_timeout_s,
            server_header=None,
            reuse_port=reuse_port or None,
        )
        if self.settings.faults.restart_at_s > 0 and (self.peers is None or self.peers.leader):
            self._background(self._restart_later(self.settings.faults.restart_at_s))
        return int(self.server.sockets[0].getsockname()[1])

    def _tls_context(self) -> ssl.SSLContext | None:
        """An SSL context when ``tls_cert`` is set: HTTPS and WSS on the same port."""
        if not self.settings.tls_cert:
            return None
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

    def _background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, self.started_at + delay - self.loop.time()))
        if self.peers is None:
            await self.restart(self.settings.faults.restart_pause_s)
        else:
            self.stats.faults["restarts"] += 1  # once for the gateway; every process restarts
            await self.peers.ask_all("restart", pause_s=self.settings.faults.restart_pause_s)

    async def restart(self, pause_s: float, counted: bool = True) -> None:
        """Rolling restart: close every session with 1012, refuse upgrades (503) for ``pause_s``."""
        if counted:
            self.stats.faults["restarts"] += 1
        self.paused_until = self.loop.time() + pause_s
        log.info("rolling restart: closing %d sessions, pausing upgrades %.1f s", len(self.sessions), pause_s)
        # Shielded: a close abandoned half-way (by shutdown cancelling this task)
        # would leave its connection CLOSING with nobody enforcing close_timeout.
        closes = [s.conn.close(*CLOSES["restart"]) for s in list(self.sessions)]
        await asyncio.shield(asyncio.gather(*closes, return_exceptions=True))

    # --- WebSocket -----------------------------------------------------------

    def release(self, conn: GatewayConnection) -> None:
        """A connection that held one of max_connections is gone."""
        self.shared.release()

    def _unavailable(self) -> Response | None:
        """503 while draining, during a restart pause, or at max_connections."""
        cap = self.settings.max_connections
        if self.draining or self.loop.time() < self.paused_until or (cap and self.shared.active() >= cap):
            return refuse(self.stats, 503, "unavailable", "gateway unavailable, retry later")
        return None

    async def _wait_unless_stopping(self, conn: GatewayConnection, seconds: float | None) -> None:
        stop = self.loop.create_task(self.stopping.wait())
        waits: list[asyncio.Future[Any]] = [stop, conn.connection_lost_waiter]
        try:
            await asyncio.wait(waits, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def admit(self, ws: ServerConnection, request: Request) -> Response | None:
        """Admission of an upgrade: path, the endpoint's check, availability, then the planned upgrade faults."""
        assert isinstance(ws, GatewayConnection)
        conn = ws
        endpoint = self.sockets.get(urlsplit(request.path).path)
        if endpoint is None:
            return conn.respond(http.HTTPStatus.NOT_FOUND, "no WebSocket endpoint here\n")
        admitted = endpoint(conn, request)
        if isinstance(admitted, Response):
            return admitted
        conn.opener = admitted
        plan = conn.plan = self.plan.session(self.shared.next_seq())
        if refused := self._unavailable():
            return refused
        # Fault decisions of the upgrade: refuse, stall, slow handshake.
        if plan.refuse_status is not None:
            self.stats.faults_upgrade_refused[str(plan.refuse_status)] += 1
            return refuse(self.stats, plan.refuse_status, "injected", "upgrade refused (fault injection)")
        if plan.stall:
            self.stats.faults["stalled_handshakes"] += 1
            await self._wait_unless_stopping(conn, None)  # until open_timeout_s drops it
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if plan.handshake_delay_s > 0:
            self.stats.faults["slow_handshakes"] += 1
            await self._wait_unless_stopping(conn, plan.handshake_delay_s)
            if refused := self._unavailable():
                return refused
        if not self.shared.reserve(self.settings.max_connections):  # another process took the last one
            return refuse(self.stats, 503, "unavailable", "gateway unavailable, retry later")
        conn.reserved = True
        return None

    async def _handler(self, conn: ServerConnection) -> None:
        assert isinstance(conn, GatewayConnection) and conn.plan is not None and conn.opener is not None
        self.stats.upgrades_accepted += 1
        self.stats.session_opened()
        session = conn.opener(conn.plan)
        self.sessions.add(session)
        try:
            record = await session.run()
        finally:
            self.sessions.discard(session)
        self.stats.session_closed(record, session.age_at_end())
        log.debug("session %d closed: %s", conn.plan.seq, record)

    # --- plain HTTP ----------------------------------------------------------

    def handle_http(self, request: HttpRequest) -> Answer | Awaitable[Answer]:
        """Route one plain HTTP request."""
        path = urlsplit(request.target).path
        route = self.routes.get((path, request.method))
        if route is not None:
            return route(request)
        if path in self.sockets and request.method == "GET":
            return error(426, "upgrade_required", "this endpoint needs a WebSocket upgrade")
        if any(known == path for known, _ in self.routes) or path in self.sockets:
            return error(405, "method_not_allowed", f"{request.method} not allowed on {path}")
        return error(404, "not_found", f"no route for {path}")

    def issue_token(self, request: HttpRequest) -> Answer:
        """``POST /api/v2/guests``: a signed guest token, unless draining, malformed or over the rate."""
        if self.draining:
            self.stats.tokens_refused["503"] += 1
            return error(503, "draining", "gateway is shutting down", (("Retry-After", "1"),))
        if request.body.strip():
            try:
                data = orjson.loads(request.body)
            except ValueError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("displayName"), (str, type(None))):
                self.stats.tokens_refused["400"] += 1
                return error(400, "bad_request", 'body must be a JSON object like {"displayName": "..."}')
        retry = self.token_window.admit(self.loop.time())
        if retry is not None:
            self.stats.tokens_refused["429"] += 1
            return error(429, "rate_limited", "too many token requests", (("Retry-After", str(retry)),))
        guest_id = str(uuid.uuid4())
        expires_at = time.time() + self.settings.token_ttl_s
        token = self.signer.issue(guest_id, expires_at, self.settings.token_scopes)
        self.stats.tokens_issued += 1
        return Answer(201, {"guestId": guest_id, "token": token, "expiresAt": int(expires_at),
                            "scopes": list(self.settings.token_scopes)})

    def trigger_restart(self, request: HttpRequest) -> Answer | Awaitable[Answer]:
        """``POST /_gateway/restart?pause_s=S``: a rolling restart now."""
        values = parse_qs(urlsplit(request.target).query).get("pause_s", [str(self.settings.faults.restart_pause_s)])
        try:
            pause = float(values[0])
            if not 0 <= pause < math.inf:
                raise ValueError
        except ValueError:
            return error(400, "bad_request", "pause_s must be a number of seconds >= 0")
        if self.peers is not None:
            return self._restart_all(pause)
        closing = len(self.sessions)
        self._background(self.restart(pause))
        return Answer(202, {"restarting": closing, "pause_s": pause})

    # --- as one of several processes (cluster.py) ------------------------------------

    def stats_answer(self, request: HttpRequest) -> Answer | Awaitable[Answer]:
        """``GET /_gateway/stats``: this process's record, or the exact sum of every process's."""
        if self.peers is None:
            return Answer(200, self.stats.snapshot(self.settings.public_dict()))
        return self._merged("stats")

    def webmessaging_answer(self, request: HttpRequest) -> Answer | Awaitable[Answer]:
        if self.peers is None:
            return Answer(200, self.webmessaging.snapshot())
        return self._merged("webmessaging")

    async def _merged(self, key: str) -> Answer:
        assert self.peers is not None
        try:
            docs = await self.peers.ask_all("stats")
        except PeerUnavailable as exc:
            return error(503, "incomplete", f"{exc}; no partial record is given")
        merged = merge_snapshots([doc[key] for doc in docs])
        if key == "stats":
            merged["settings"] = self.settings.public_dict()
            merged["processes"] = [doc["process"] for doc in docs]
        return Answer(200, merged)

    async def _local_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.stats
        return {"stats": s.snapshot({}), "webmessaging": self.webmessaging.snapshot(),
                "process": {"pid": os.getpid(), "opened": s.opened, "open": s.open, "tokens_issued": s.tokens_issued}}

    async def _local_restart(self, args: dict[str, Any]) -> dict[str, Any]:
        closing = len(self.sessions)
        self._background(self.restart(float(args["pause_s"]), counted=False))
        return {"restarting": closing}

    async def _restart_all(self, pause: float) -> Answer:
        assert self.peers is not None
        self.stats.faults["restarts"] += 1  # once for the gateway; every process restarts
        try:
            answers = await self.peers.ask_all("restart", pause_s=pause)
        except PeerUnavailable as exc:
            return error(503, "incomplete", f"{exc}; the other processes did restart")
        return Answer(202, {"restarting": sum(a["restarting"] for a in answers), "pause_s": pause})
