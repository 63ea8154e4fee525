"""``GeventTransport``: the clock, sleep, the token call and WebSocket connect, under gevent."""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import gevent

from loadkit.connection import ConnectAttempt, Connection, Transport
from loadkit.protocol.base import TokenRequest
from loadkit.transport.handshake import Dialer
from loadkit.transport.resolver import Resolver
from loadkit.transport.token import HTTP_POOL, HttpAnswer, HttpEndpoint
from loadkit.transport.tracing import Trace
from loadkit.transport.websocket import TlsWebSocket, WebSocket


class GeventTransport:
    """Clock, sleep, HTTP and WebSocket connect, all cooperative under gevent."""

    def __init__(self, *, open_timeout: float = 10.0, close_timeout: float = 2.0,
                 http_timeout: float = 10.0, max_size: int | None = 1 << 20,
                 ssl_context: ssl.SSLContext | None = None, http_pool: int = HTTP_POOL,
                 trace: Trace | None = None) -> None:
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.http_timeout = http_timeout
        self.max_size = max_size
        self.ssl_context = ssl_context
        #: connections per token endpoint (how many at once: see ``HttpEndpoint``)
        self.http_pool = http_pool
        self._http_endpoints: dict[tuple[str, str, int], HttpEndpoint] = {}
        self._resolver = Resolver()
        #: Off (None) for load: then nothing below costs anything.
        self.trace = trace
        self._dialer = Dialer(open_timeout=open_timeout, close_timeout=close_timeout, max_size=max_size,
                              ssl_context=ssl_context, trace=trace, resolver=self._resolver)

    now = staticmethod(time.perf_counter)

    @staticmethod
    def sleep(seconds: float) -> None:
        gevent.sleep(max(0.0, seconds))

    # -- HTTP (the token call) -------------------------------------------------

    def http(self, request: TokenRequest) -> HttpAnswer:
        """Perform ``request``: its status, body, time on the wire and time waited in the harness.

        Raises ``ConnectRefused`` / ``ConnectFailed`` when no answer came
        (the target's doing), ``HarnessBusy`` when no connection slot came
        free within ``open_timeout`` (the harness's own queue).
        """
        url = urlsplit(request.url)
        scheme = url.scheme
        host = url.hostname or ""
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        endpoint = self._http_endpoints.get(key)
        if endpoint is None:
            ctx = None
            if scheme == "https":
                ctx = self.ssl_context or ssl.create_default_context()
            endpoint = self._http_endpoints[key] = HttpEndpoint(host, port, ctx, self.http_pool, self._resolver)
        target = url.path or "/"
        if url.query:
            target += "?" + url.query
        return endpoint.request(request.method, target, list(request.headers), request.body or b"",
                                self.open_timeout, self.http_timeout)

    # -- WebSocket -------------------------------------------------------------

    def connect(self, url: str, headers: list[tuple[str, str]] | None = None,
                timeout: float | None = None, attempt: ConnectAttempt | None = None) -> WebSocket:
        """TCP (+TLS), the HTTP upgrade, and wait until the socket is open.

        Raises ``ConnectRefused``, ``ConnectFailed`` or ``UpgradeRefused``.
        A stop (a ``BaseException`` that is not an ``Exception``) that
        arrives mid-upgrade is raised on after the half-made connection was
        left politely; how it was left is recorded on ``attempt``.
        """
        return self._dialer.connect(url, headers, self.open_timeout if timeout is None else timeout, attempt)

    def close(self) -> None:
        for endpoint in self._http_endpoints.values():
            endpoint.close()
        self._http_endpoints.clear()


if TYPE_CHECKING:
    def _conforms(transport: GeventTransport, ws: WebSocket, tls: TlsWebSocket) -> None:
        """mypy's check that the real transport provides what the driver declares it needs."""
        _t: Transport = transport
        _c: Connection = ws
        _s: Connection = tls
