"""The one module that owns sockets, gevent and timeouts.

Why not websockets' threaded client: under gevent it costs three file
descriptors and ~36 KB per idle guest (a socketpair for its background
thread, plus the socket), which caps one process near 6.6k guests under a
20,000-descriptor limit. Here websockets' sans-I/O ``ClientProtocol`` is
driven directly over one gevent socket, in the greenlet of the guest that
owns it: one descriptor, no extra greenlet, no thread emulation. The
protocol object does the RFC 6455 work (masking, fragmentation checks,
answering pings, the close handshake); this module only moves bytes and
enforces deadlines.

Everything the session driver needs from the outside world is here, behind
``GeventTransport``: a clock, sleep, one HTTP request (the token call) and
``connect``. Replacing the transport (a different I/O model, a recorder for
tests) means replacing this object; lifecycle and metrics never notice.
"""

from __future__ import annotations

import errno
import socket as _stdsocket
import ssl
import time
from collections import deque
from typing import Any

import gevent
from gevent import socket as gsocket
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State as WsState
from websockets.uri import parse_uri

from loadkit.errors import (
    ConnectFailed,
    ConnectionEnded,
    ConnectRefused,
    HttpStatusError,
    TargetProtocolError,
    UpgradeRefused,
)
from loadkit.protocol.base import TokenRequest

_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE
_RECV_SIZE = 65536


class WebSocket:
    """An open client WebSocket over one gevent socket.

    ``recv(timeout)`` returns one whole message (bytes for text and binary
    alike: orjson parses bytes directly), or ``None`` when the timeout
    passes; it raises ``ConnectionEnded`` once the connection is over, with
    the code, reason and initiator taken from the close frames actually
    exchanged. Pings from the server are answered inside ``recv``.
    """

    __slots__ = ("_sock", "_proto", "_events", "_parts", "_ended", "close_timeout", "leftover")

    def __init__(self, sock: Any, proto: ClientProtocol, pending: list[Any], close_timeout: float) -> None:
        self._sock = sock
        self._proto = proto
        self._events: deque[Any] = deque(pending)
        self._parts: list[bytes] | None = None
        self._ended: ConnectionEnded | None = None
        self.close_timeout = close_timeout
        #: Messages that arrived while we were closing: the caller still
        #: counts them (the server sent them; the harness must not lose them).
        self.leftover: list[bytes] = []

    # -- sending ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send one text frame (``data`` is UTF-8 JSON already)."""
        if self._ended is not None:
            raise self._ended
        proto = self._proto
        if proto.state is not WsState.OPEN:
            raise self._finish()
        proto.send_text(data)
        self._flush()

    def _flush(self) -> None:
        for chunk in self._proto.data_to_send():
            if chunk:
                try:
                    self._sock.sendall(chunk)
                except OSError:
                    # The peer is gone; what it sent before going (maybe a
                    # close frame) is still in our receive buffer.
                    self._drain_after_error()
                    raise self._finish() from None
            else:  # SEND_EOF: half-close
                try:
                    self._sock.shutdown(_stdsocket.SHUT_WR)
                except OSError:
                    pass

    # -- receiving -------------------------------------------------------------

    def recv(self, timeout: float | None) -> bytes | None:
        if self._ended is not None:
            raise self._ended
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            while self._events:
                msg = self._on_event(self._events.popleft())
                if msg is not None:
                    return msg
            if self._proto.state is WsState.CLOSED or self._proto.close_rcvd is not None \
                    or self._proto.parser_exc is not None:
                raise self._finish()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if not self._read(remaining):
                return None

    def _read(self, timeout: float | None) -> bool:
        """Read once and feed the protocol; False on timeout."""
        sock = self._sock
        sock.settimeout(timeout)
        try:
            data = sock.recv(_RECV_SIZE)
        except (TimeoutError, _stdsocket.timeout):
            return False
        except OSError:
            data = b""  # reset by peer: same as EOF without a close frame
        proto = self._proto
        if data:
            proto.receive_data(data)
        else:
            proto.receive_eof()
        self._events.extend(proto.events_received())
        self._flush_quietly()
        return True

    def _flush_quietly(self) -> None:
        """Send what the protocol owes the peer (pongs, a close echo)."""
        for chunk in self._proto.data_to_send():
            try:
                if chunk:
                    self._sock.sendall(chunk)
                else:
                    self._sock.shutdown(_stdsocket.SHUT_WR)
            except OSError:
                pass

    def _on_event(self, frame: Any) -> bytes | None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                return frame.data
            self._parts = [frame.data]
        elif opcode is _CONT and self._parts is not None:
            self._parts.append(frame.data)
            if frame.fin:
                data, self._parts = b"".join(self._parts), None
                return data
        # PING is answered by the protocol; PONG and CLOSE need nothing here.
        return None

    def _drain_after_error(self) -> None:
        sock = self._sock
        try:
            sock.settimeout(0.05)
            while self._proto.close_rcvd is None:
                data = sock.recv(_RECV_SIZE)
                if not data:
                    break
                self._proto.receive_data(data)
        except OSError:
            pass
        self._proto.receive_eof()
        self._proto.events_received()

    def _finish(self) -> ConnectionEnded:
        """Settle how the connection ended, release the socket, remember it."""
        if self._ended is not None:
            return self._ended
        proto = self._proto
        if proto.parser_exc is not None and proto.close_rcvd is None \
                and not isinstance(proto.parser_exc, EOFError):
            # We failed the connection (bad framing, frame too big): the
            # protocol queued our close frame; send it and stop.
            self._flush_quietly()
            sent = proto.close_sent
            code = sent.code if sent is not None else 1002
            reason = str(proto.parser_exc) if sent is None else sent.reason or str(proto.parser_exc)
            self._ended = TargetProtocolError(code, reason, "client")
            self._close_socket()
            return self._ended
        if proto.close_rcvd is not None and proto.state is not WsState.CLOSED:
            self._wait_for_eof()
        rcvd, sent = proto.close_rcvd, proto.close_sent
        if proto.close_rcvd_then_sent or (rcvd is not None and sent is None):
            self._ended = ConnectionEnded(rcvd.code, rcvd.reason, "server")
        elif sent is not None and rcvd is not None and rcvd.code != sent.code:
            # Both closed at once: the server's frame is not an echo of ours,
            # so it was sent before ours arrived. The server ended it.
            self._ended = ConnectionEnded(rcvd.code, rcvd.reason, "server")
        elif sent is not None:
            # Ours came first, answered or not (a server that never answers
            # still received it, or the TCP connection is gone anyway).
            self._ended = ConnectionEnded(sent.code, sent.reason, "client")
        else:
            self._ended = ConnectionEnded(1006, "", "none")
        self._close_socket()
        return self._ended

    def _wait_for_eof(self) -> None:
        """RFC 6455: after the close handshake the server closes TCP first."""
        deadline = time.monotonic() + self.close_timeout
        while self._proto.state is not WsState.CLOSED:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                break

    def _close_socket(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    # -- closing -----------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "", wait: bool = True) -> ConnectionEnded:
        """Start (or finish) the close handshake and return how it ended.

        With ``wait`` the server's close frame is awaited for up to
        ``close_timeout`` (messages that arrive meanwhile go to
        ``leftover``); without it our close frame is written and the socket
        released at once.
        """
        if self._ended is not None:
            return self._ended
        proto = self._proto
        if proto.state is WsState.OPEN:
            proto.send_close(code, reason)
            try:
                for chunk in proto.data_to_send():
                    if chunk:
                        self._sock.sendall(chunk)
            except OSError:
                self._drain_after_error()
                return self._finish()
        if wait:
            deadline = time.monotonic() + self.close_timeout
            while proto.close_rcvd is None and proto.state is not WsState.CLOSED:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._read(remaining):
                    break
        while self._events:
            msg = self._on_event(self._events.popleft())
            if msg is not None:
                self.leftover.append(msg)
        return self._finish()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed client)."""
        try:
            self._sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        except OSError:
            pass
        self._close_socket()
        self._ended = ConnectionEnded(1006, "", "none")

    @property
    def closed(self) -> bool:
        return self._ended is not None


class GeventTransport:
    """Clock, sleep, HTTP and WebSocket connect, all cooperative under gevent."""

    def __init__(self, *, open_timeout: float = 10.0, close_timeout: float = 2.0,
                 http_timeout: float = 10.0, max_size: int | None = 1 << 20,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.http_timeout = http_timeout
        self.max_size = max_size
        self.ssl_context = ssl_context
        self._http_clients: dict[tuple[str, str, int], Any] = {}

    now = staticmethod(time.perf_counter)

    @staticmethod
    def sleep(seconds: float) -> None:
        gevent.sleep(max(0.0, seconds))

    # -- HTTP (the token call) -------------------------------------------------

    def http(self, request: TokenRequest) -> tuple[int, bytes]:
        """Perform ``request``; returns (status, body) for a 2xx.

        Raises ``HttpStatusError`` for other statuses, ``ConnectRefused`` /
        ``ConnectFailed`` when no answer came.
        """
        from geventhttpclient import HTTPClient
        from geventhttpclient.url import URL

        url = URL(request.url)
        key = (url.scheme, url.host, url.port)
        client = self._http_clients.get(key)
        if client is None:
            kwargs: dict[str, Any] = {}
            if url.scheme == "https" and self.ssl_context is not None:
                ctx = self.ssl_context
                kwargs["ssl_context_factory"] = lambda *a, **k: ctx
            client = HTTPClient(
                url.host, url.port, ssl=url.scheme == "https",
                connection_timeout=self.open_timeout, network_timeout=self.http_timeout,
                concurrency=64, headers={"User-Agent": "loadkit"}, **kwargs,
            )
            self._http_clients[key] = client
        try:
            response = client.request(request.method, url.request_uri, body=request.body or None,
                                      headers=dict(request.headers))
            try:
                body = response.read()
            finally:
                response.release()
        except ConnectionRefusedError:
            raise ConnectRefused("token") from None
        except (TimeoutError, _stdsocket.timeout, gevent.Timeout):
            raise ConnectFailed("token: timeout") from None
        except OSError as exc:
            raise ConnectFailed(f"token: {_os_reason(exc)}") from None
        except Exception as exc:  # geventhttpclient's parse errors and the like
            raise ConnectFailed(f"token: {exc.__class__.__name__}") from None
        status = response.status_code
        if not 200 <= status < 300:
            raise HttpStatusError(status, body)
        return status, body

    # -- WebSocket -------------------------------------------------------------

    def connect(self, url: str, headers: list[tuple[str, str]] | None = None,
                timeout: float | None = None) -> WebSocket:
        """TCP (+TLS), the HTTP upgrade, and wait until the socket is open."""
        timeout = self.open_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            wsuri = parse_uri(url)
        except InvalidURI as exc:
            raise ConnectFailed(f"invalid URL: {exc}") from None
        try:
            sock = gsocket.create_connection((wsuri.host, wsuri.port), timeout=timeout)
        except ConnectionRefusedError:
            raise ConnectRefused("websocket") from None
        except (TimeoutError, _stdsocket.timeout):
            raise ConnectFailed("TCP connect timeout") from None
        except OSError as exc:
            raise ConnectFailed(_os_reason(exc)) from None
        try:
            sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
            if wsuri.secure:
                ctx = self.ssl_context or ssl.create_default_context()
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock = ctx.wrap_socket(sock, server_hostname=wsuri.host)
            proto = ClientProtocol(wsuri, max_size=self.max_size)
            request = proto.connect()
            for name, value in headers or ():
                request.headers[name] = value
            proto.send_request(request)
            for chunk in proto.data_to_send():
                sock.sendall(chunk)
            pending: list[Any] = []
            try:
                self._await_upgrade(sock, proto, deadline, pending)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    raise
                # The harness is stopping mid-upgrade. Leave like a client
                # should, so the gateway records a close, not a lost link:
                # finish the upgrade briefly and close 1001.
                exc.loadkit_close = self._leave_during_upgrade(sock, proto, pending)  # type: ignore[attr-defined]
                raise
            return WebSocket(sock, proto, pending, self.close_timeout)
        except ssl.SSLError as exc:
            sock.close()
            raise ConnectFailed(f"TLS: {exc.reason or exc.__class__.__name__}") from None
        except (ConnectFailed, UpgradeRefused):
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise ConnectFailed(_os_reason(exc)) from None
        except BaseException:
            sock.close()
            raise

    def _leave_during_upgrade(self, sock: Any, proto: ClientProtocol, pending: list[Any]) -> ConnectionEnded | None:
        try:
            self._await_upgrade(sock, proto, time.monotonic() + self.close_timeout, pending)
        except Exception:
            return None  # refused, failed or timed out: nothing was opened
        ws = WebSocket(sock, proto, pending, self.close_timeout)
        return ws.close(1001, "harness stopping", wait=True)

    @staticmethod
    def _await_upgrade(sock: Any, proto: ClientProtocol, deadline: float, pending: list[Any]) -> None:
        """Read until the upgrade is answered; ConnectFailed/UpgradeRefused if it isn't 101."""
        while proto.state is WsState.CONNECTING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectFailed("upgrade timeout")
            sock.settimeout(remaining)
            try:
                data = sock.recv(_RECV_SIZE)
            except (TimeoutError, _stdsocket.timeout):
                raise ConnectFailed("upgrade timeout") from None
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
            for event in proto.events_received():
                if not isinstance(event, Response):
                    pending.append(event)
            if proto.handshake_exc is not None:
                exc = proto.handshake_exc
                if isinstance(exc, InvalidStatus):
                    raise UpgradeRefused(exc.response.status_code)
                raise ConnectFailed(f"upgrade failed: {_handshake_reason(exc)}")
            if not data and proto.state is WsState.CONNECTING:
                raise ConnectFailed("connection closed during the upgrade")

    def close(self) -> None:
        for client in self._http_clients.values():
            client.close()
        self._http_clients.clear()


def _os_reason(exc: OSError) -> str:
    """``connection reset by peer``: the errno's text, for failure tables."""
    if exc.strerror:
        return exc.strerror.lower()
    if exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return str(exc) or exc.__class__.__name__


def _handshake_reason(exc: Exception) -> str:
    if isinstance(exc, InvalidHandshake):
        return str(exc) or exc.__class__.__name__
    return exc.__class__.__name__
