"""Opening a WebSocket: TCP (+TLS), the HTTP upgrade, and leaving politely when stopped mid-way."""

from __future__ import annotations

import _socket
import errno
import os
import socket as _stdsocket
import ssl
import time
from typing import Any

from gevent import socket as gsocket
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.http11 import Response
from websockets.protocol import Protocol, Side
from websockets.protocol import State as WsState
from websockets.uri import parse_uri

from loadkit.connection import ConnectAttempt
from loadkit.errors import ConnectFailed, ConnectionEnded, ConnectRefused, UpgradeRefused
from loadkit.transport.resolver import Resolver
from loadkit.transport.tracing import FrameLog, Trace, tls_fields, trace_responses
from loadkit.transport.waiting import os_reason, read_watcher, wait, write_watcher
from loadkit.transport.websocket import TlsWebSocket, WebSocket

_monotonic = time.monotonic


class Dialer:
    """Everything a connect needs from the transport's settings, and the connect itself."""

    def __init__(self, *, open_timeout: float, close_timeout: float, max_size: int | None,
                 ssl_context: ssl.SSLContext | None, trace: Trace | None, resolver: Resolver) -> None:
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_size = max_size
        self.ssl_context = ssl_context
        self.trace = trace
        self.resolver = resolver
        #: websockets' logger hook, only when tracing: untraced, nothing below costs anything
        self._log: dict[str, Any] = {} if trace is None else {"logger": FrameLog(trace)}

    def connect(self, url: str, headers: list[tuple[str, str]] | None, timeout: float,
                attempt: ConnectAttempt | None) -> WebSocket:
        """TCP (+TLS), the HTTP upgrade, and wait until the socket is open (see ``GeventTransport.connect``)."""
        deadline = _monotonic() + timeout
        try:
            wsuri = parse_uri(url)
        except InvalidURI as exc:
            raise ConnectFailed(f"invalid URL: {exc}") from None
        try:
            raw = self._tcp_connect(wsuri.host, wsuri.port, deadline)
        except ConnectionRefusedError:
            raise ConnectRefused("websocket") from None
        except TimeoutError:
            raise ConnectFailed("TCP connect timeout") from None
        except OSError as exc:
            raise ConnectFailed(os_reason(exc)) from None
        ws: WebSocket | None = None
        sock: Any = raw
        trace = self.trace
        try:
            raw.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
            proto = ClientProtocol(wsuri, max_size=self.max_size, **self._log)
            if wsuri.secure:
                ctx = self.ssl_context or ssl.create_default_context()
                sock = gsocket.socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
                sock.settimeout(max(0.001, deadline - _monotonic()))
                sock = ctx.wrap_socket(sock, server_hostname=wsuri.host)
                if trace is not None:
                    trace("tls", tls_fields(sock))
                ws = TlsWebSocket(sock, proto, self.max_size, self.close_timeout, self.open_timeout)
            else:
                ws = WebSocket(raw, proto, self.max_size, self.close_timeout, self.open_timeout,
                               read_watcher(raw.fileno()))
            request = proto.connect()
            for name, value in headers or ():
                request.headers[name] = value
            if trace is not None:
                trace("upgrade_request", {"path": request.path, "headers": list(request.headers.raw_items())})
            proto.send_request(request)
            for chunk in proto.data_to_send():
                ws.handshake_write(chunk)
            try:
                self._await_upgrade(ws, proto, deadline)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    raise
                # The harness is stopping mid-upgrade. Leave like a client
                # should, so the gateway records a close, not a lost link:
                # finish the upgrade briefly and close 1001; the caller
                # learns how from ``attempt``.
                left = self._leave_during_upgrade(ws, proto)
                if attempt is not None:
                    attempt.left = left
                raise
            return ws
        except ssl.SSLError as exc:
            _close_quietly(ws, sock)
            if trace is not None:
                trace("tls_failed", {"reason": exc.reason or exc.__class__.__name__,
                                     "verify_message": getattr(exc, "verify_message", None)})
            raise ConnectFailed(f"TLS: {exc.reason or exc.__class__.__name__}") from None
        except (ConnectFailed, UpgradeRefused):
            _close_quietly(ws, sock)
            raise
        except OSError as exc:
            _close_quietly(ws, sock)
            raise ConnectFailed(os_reason(exc)) from None
        except BaseException:
            _close_quietly(ws, sock)
            raise

    def _tcp_connect(self, host: str, port: int, deadline: float) -> Any:
        """A connected non-blocking socket (the real one, not gevent's wrapper).

        Like ``socket.create_connection``: each address in turn, the last
        error if none answers; ``TimeoutError`` at ``deadline``.
        """
        last: OSError | None = None
        addresses = self.resolver.addresses(host, port, max(0.0, deadline - _monotonic()))
        trace = self.trace
        if trace is not None:
            trace("dns", {"host": host, "addresses": [addr[0] for _fam, addr in addresses]})
        for family, address in addresses:
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                err = sock.connect_ex(address)
                if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                    watcher = write_watcher(sock.fileno())
                    try:
                        if not wait(watcher, max(0.0, deadline - _monotonic())):
                            raise TimeoutError(errno.ETIMEDOUT, "timed out")
                    finally:
                        watcher.close()
                    err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))  # ECONNREFUSED: a ConnectionRefusedError
                if trace is not None:
                    trace("tcp", {"address": address[0], "port": address[1]})
                return sock
            except OSError as exc:
                sock.close()
                last = exc
                if trace is not None:
                    trace("tcp_failed", {"address": address[0], "port": address[1], "error": os_reason(exc)})
            except BaseException:
                sock.close()
                raise
        assert last is not None
        raise last

    def _leave_during_upgrade(self, ws: WebSocket, proto: ClientProtocol) -> ConnectionEnded | UpgradeRefused | None:
        try:
            self._await_upgrade(ws, proto, _monotonic() + self.close_timeout)
        except UpgradeRefused as exc:
            return exc  # the target said no before we left: that is how it ended
        except (ConnectFailed, OSError):
            return None  # failed or timed out: nothing was opened
        return ws.close(1001, "harness stopping", wait=True)

    def _await_upgrade(self, ws: WebSocket, proto: ClientProtocol, deadline: float) -> None:
        """Read until the upgrade is answered; ConnectFailed/UpgradeRefused if it isn't 101.

        websockets' ``ClientProtocol`` reads the response, then parses frames
        from inside a generator that keeps the ``Response`` (headers and
        all) alive for the life of the connection: about 2 KB per idle
        guest. So it is fed the response head only; once it says OPEN, the
        connection goes on without it (a plain ``Protocol`` made when a frame
        needs one, or at once when traced) fed the bytes after the head.
        Anything else (a refusal with a body, a malformed head) is fed to
        ``ClientProtocol`` whole, which reports it as before.
        """
        fed_tail = b""  # the last 3 bytes fed, to find a CRLFCRLF split across reads
        in_head = True
        trace = self.trace
        while proto.state is WsState.CONNECTING:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise ConnectFailed("upgrade timeout")
            data = ws.handshake_read(remaining)
            if data is None:
                raise ConnectFailed("upgrade timeout")
            if not data:
                proto.receive_eof()
            elif in_head:
                window = fed_tail + data
                end = window.find(b"\r\n\r\n")
                if end < 0:
                    proto.receive_data(data)
                    fed_tail = window[-3:]
                else:
                    cut = end + 4 - len(fed_tail)
                    in_head = False
                    proto.receive_data(data[:cut])
                    rest = data[cut:]
                    if _opened(proto):
                        head = proto.events_received()  # the Response: not needed
                        if trace is not None:
                            trace_responses(trace, head)
                        opened = None if trace is None else Protocol(
                            Side.CLIENT, state=WsState.OPEN, max_size=self.max_size, **self._log)
                        ws.handshake_done(opened, rest)
                        return
                    if rest:
                        proto.receive_data(rest)
            else:
                proto.receive_data(data)
            for event in proto.events_received():
                if not isinstance(event, Response):
                    ws.handshake_frames([event])
                elif trace is not None:
                    trace_responses(trace, [event])
            if proto.handshake_exc is not None:
                exc = proto.handshake_exc
                if isinstance(exc, InvalidStatus):
                    raise UpgradeRefused(exc.response.status_code)
                raise ConnectFailed(f"upgrade failed: {exc.__class__.__name__}", _handshake_reason(exc))
            if not data and proto.state is WsState.CONNECTING:
                raise ConnectFailed("connection closed during the upgrade")


def _opened(proto: ClientProtocol) -> bool:
    """The upgrade answer was a good 101 (a function: mypy narrows ``proto.state`` for good otherwise)."""
    return proto.state is WsState.OPEN and proto.handshake_exc is None


def _handshake_reason(exc: Exception) -> str:
    if isinstance(exc, InvalidHandshake):
        return str(exc) or exc.__class__.__name__
    return exc.__class__.__name__


def _close_quietly(ws: WebSocket | None, sock: Any) -> None:
    if ws is not None:
        ws.discard()
        return
    try:
        sock.close()
    except OSError:
        pass
