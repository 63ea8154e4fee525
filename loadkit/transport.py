"""The one module that owns sockets, gevent and timeouts.

Why not websockets' threaded client: under gevent it costs three file
descriptors and ~36 KB per idle guest (a socketpair for its background
thread, plus the socket), which caps one process near 6.6k guests under a
20,000-descriptor limit. Here websockets' sans-I/O ``ClientProtocol`` is
driven directly over one non-blocking socket and one gevent read watcher,
in the greenlet of the guest that owns it: one descriptor, no extra
greenlet, no thread emulation (``wss://`` uses gevent's SSL socket). The
protocol object does the RFC 6455 work (masking, fragmentation checks,
answering pings, the close handshake); this module only moves bytes and
enforces deadlines.

Everything the session driver needs from the outside world is here, behind
``GeventTransport``: a clock, sleep, one HTTP request (the token call) and
``connect``. Replacing the transport (a different I/O model, a recorder for
tests) means replacing this object; lifecycle and metrics never notice.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket as _stdsocket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import gevent
import h11
from gevent import select as gselect
from gevent import socket as gsocket
from gevent.lock import Semaphore
from gevent.hub import Waiter, get_hub
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, PayloadTooBig, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol, Side
from websockets.protocol import State as WsState
from websockets.uri import parse_uri

from loadkit.closes import attribute_close
from loadkit.connection import Connection, Transport
from loadkit.errors import (
    ConnectFailed,
    ConnectionEnded,
    ConnectRefused,
    HttpStatusError,
    TargetProtocolError,
    UpgradeRefused,
)
from loadkit.protocol.base import BAD_FRAMING, INVALID_UTF8, TOO_BIG, BinaryFrame, TokenRequest, is_utf8

_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE
_OPEN, _CLOSED = WsState.OPEN, WsState.CLOSED
_RECV_SIZE = 65536
_EV_READ, _EV_WRITE = 1, 2
_monotonic = time.monotonic
_perf_counter = time.perf_counter  # the session driver's clock (GeventTransport.now)
#: How long a name's addresses are reused before asking the resolver again.
_RESOLVE_TTL_S = 10.0
#: Connections per token endpoint at once. A request beyond that waits for a
#: slot (harness wait, bounded by the connect timeout).
HTTP_POOL = 256

#: ``trace(event, fields)``: an optional observer of each step of a connection
#: (``loadkit probe``). Events: ``dns``, ``tcp``, ``tcp_failed``, ``tls``,
#: ``tls_failed``, ``upgrade_request``, ``upgrade_response``, ``frame_sent``,
#: ``frame_received``, ``eof_sent``, ``eof_received``; fields are plain data.
Trace = Callable[[str, dict[str, Any]], None]


# -- waiting, the cheap way ---------------------------------------------------------
#
# gevent's socket methods raise and catch an exception for every would-block
# read, build a ``Timeout`` (an exception instance plus a timer) for every
# wait, and throw it into the greenlet when the wait times out; ``sendall``
# asks the kernel for the send buffer size on every call. For a guest that
# wakes up twice per chat message that was most of the transport's cost. The
# plain-TCP path below keeps the real non-blocking socket and one read
# watcher per connection, and waits on that watcher plus a throwaway timer:
# a timeout is the value False, not an exception. TLS keeps gevent's
# SSLSocket (the SSL layer has its own want-read/want-write dance).


def _wait(watcher: Any, timeout: float | None) -> bool:
    """Block this greenlet until ``watcher`` fires (True) or ``timeout`` passes (False).

    Like gevent's ``hub.wait(watcher)`` with a timer beside it. A kill
    (``GreenletExit``) raised while waiting propagates after both watchers
    are stopped.
    """
    hub = get_hub()
    waiter = Waiter(hub)
    watcher.start(waiter.switch, True)
    if timeout is None:
        try:
            return waiter.get()  # type: ignore[no-any-return]
        finally:
            watcher.stop()
    timer = hub.loop.timer(timeout if timeout > 0 else 0.0)
    timer.start(waiter.switch, False, update=True)
    try:
        return waiter.get()  # type: ignore[no-any-return]
    finally:
        watcher.stop()
        timer.close()


def _is_numeric(host: str) -> int | None:
    """The address family of a numeric host, or None for a name."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return family
        except OSError:
            continue
    return None


class _Resolver:
    """Addresses per (host, port): numeric hosts never reach a resolver; names
    go through gevent's (a thread pool round trip each) once per TTL.

    A harness connects to the same few hosts thousands of times a second;
    asking the resolver each time cost about 100 µs of CPU and up to seconds
    of queueing in the resolver's thread pool during a spawn.
    """

    def __init__(self, ttl: float = _RESOLVE_TTL_S) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[int, Any]]]] = {}

    def addresses(self, host: str, port: int, timeout: float | None = None) -> list[tuple[int, Any]]:
        """The addresses of ``host``; ``TimeoutError`` when the resolver takes over ``timeout``."""
        family = _is_numeric(host)
        if family is not None:
            return [(family, (host, port))]
        key = (host, port)
        hit = self._cache.get(key)
        now = _monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        with gevent.Timeout(timeout, TimeoutError(errno.ETIMEDOUT, "name resolution timed out")):
            infos = gsocket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
        addrs = [(fam, sockaddr) for fam, _type, _proto, _canon, sockaddr in infos
                 if fam in (_socket.AF_INET, _socket.AF_INET6)]
        if not addrs:
            raise OSError(errno.EADDRNOTAVAIL, "no address for host")
        self._cache[key] = (now + self.ttl, addrs)
        return addrs



class HttpAnswer(NamedTuple):
    """A token endpoint's answer, with where the time went."""

    status: int
    body: bytes
    #: from the request's first byte on the wire (a new connection's TCP
    #: connect) to the answer's last byte: the target's latency
    wire_s: float
    #: before that, inside the harness: waiting for a free connection slot
    #: and for the resolver
    waited_s: float


class HarnessBusy(Exception):
    """The harness could not start a request in time (its own queue); never the target's failure."""


class _Unanswered(ConnectFailed):
    """The connection failed before any byte of an answer: safe to retry on a new one."""


class _HttpConn:
    """One keep-alive HTTP/1.1 connection: a gevent socket and h11's state machine."""

    __slots__ = ("sock", "h11")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)

    def alive(self) -> bool:
        """Idle and not closed by the server: an idle connection that is readable has
        been closed (or sent something unasked): either way it is not reusable."""
        if self.h11.our_state is not h11.IDLE:
            return False
        try:
            readable, _w, _x = gselect.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _HttpEndpoint:
    """Keep-alive connections to one token endpoint, at most ``size`` at once.

    Why our own (about 100 lines on h11, the sans-I/O HTTP/1.1 parser)
    instead of geventhttpclient's pool: that pool waits for a free
    connection with no deadline and resolves the host inside the timed
    call, so a spawn burst's queue inside the harness read as the target's
    token latency (43 s at p95 in one 18,000-guest run), and caching its
    resolver meant patching a private method. Here the wait for a slot and
    for the resolver is measured apart (``HttpAnswer.waited_s``) and bounded
    by the connect timeout; the exchange itself by the HTTP timeout.
    """

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, size: int,
                 resolver: _Resolver) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.size = size
        self.slots = Semaphore(size)
        self.idle: list[_HttpConn] = []
        self.resolver = resolver

    def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                connect_timeout: float, http_timeout: float) -> HttpAnswer:
        t0 = _monotonic()
        if not self.slots.acquire(timeout=connect_timeout):
            raise HarnessBusy(f"token: no free connection in the harness's pool of {self.size} "
                              f"within {connect_timeout:g} s")
        try:
            conn = None
            while self.idle and conn is None:
                candidate = self.idle.pop()
                if candidate.alive():
                    conn = candidate
                else:
                    candidate.close()
            reused = conn is not None
            while True:
                if conn is None:
                    addrs = self._resolve(t0 + connect_timeout)
                    on_wire = _monotonic()
                    conn = self._open(addrs, on_wire + connect_timeout)
                else:
                    on_wire = _monotonic()
                try:
                    status, answer, reusable = self._exchange(conn, method, target, headers, body,
                                                              _monotonic() + http_timeout)
                    break
                except _Unanswered:
                    conn.close()
                    if not reused:
                        raise
                    # A kept-alive connection the server closed as we reused
                    # it: once more on a new one (what every HTTP client does).
                    conn, reused = None, False
                except BaseException:
                    conn.close()
                    raise
            if reusable:
                self.idle.append(conn)
            else:
                conn.close()
            done = _monotonic()
            return HttpAnswer(status, answer, done - on_wire, on_wire - t0)
        finally:
            self.slots.release()

    def _resolve(self, deadline: float) -> list[tuple[int, Any]]:
        try:
            return self.resolver.addresses(self.host, self.port, max(0.0, deadline - _monotonic()))
        except TimeoutError:
            raise HarnessBusy("token: name resolution took longer than the connect timeout") from None
        except OSError as exc:  # the name does not resolve: the target's address is wrong
            raise ConnectFailed(f"token: name resolution: {_os_reason(exc)}") from None

    def _open(self, addrs: list[tuple[int, Any]], deadline: float) -> _HttpConn:
        last: Exception | None = None
        for family, address in addrs:
            sock = gsocket.socket(family, _socket.SOCK_STREAM)
            try:
                sock.settimeout(max(0.001, deadline - _monotonic()))
                sock.connect(address)
                sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
                if self.ssl_context is not None:
                    sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
                return _HttpConn(sock)
            except ConnectionRefusedError as exc:
                sock.close()
                last = exc
            except ssl.SSLError as exc:
                sock.close()
                raise ConnectFailed(f"token: TLS: {exc.reason or exc.__class__.__name__}") from None
            except (TimeoutError, _stdsocket.timeout):
                sock.close()
                last = ConnectFailed("token: TCP connect timeout")
            except OSError as exc:
                sock.close()
                last = ConnectFailed(f"token: {_os_reason(exc)}")
            except BaseException:
                sock.close()
                raise
        if isinstance(last, ConnectionRefusedError) or last is None:
            raise ConnectRefused("token")
        raise last

    def _exchange(self, conn: _HttpConn, method: str, target: str, headers: list[tuple[str, str]],
                  body: bytes, deadline: float) -> tuple[int, bytes, bool]:
        """Send the request, read the whole answer. (status, body, connection reusable)."""
        h = conn.h11
        sock = conn.sock
        given = {name.lower() for name, _ in headers}
        head = list(headers)
        if "host" not in given:
            name = f"[{self.host}]" if ":" in self.host else self.host
            head.insert(0, ("Host", f"{name}:{self.port}"))
        if "user-agent" not in given:
            head.append(("User-Agent", "loadkit"))
        if body and "content-length" not in given:
            head.append(("Content-Length", str(len(body))))
        try:
            out = h.send(h11.Request(method=method, target=target, headers=head)) or b""
            if body:
                out += h.send(h11.Data(data=body)) or b""
            out += h.send(h11.EndOfMessage()) or b""
            sock.settimeout(max(0.001, deadline - _monotonic()))
            sock.sendall(out)
        except (TimeoutError, _stdsocket.timeout):
            raise ConnectFailed("token: timeout") from None
        except OSError as exc:
            raise _Unanswered(f"token: {_os_reason(exc)}") from None
        status = 0
        chunks: list[bytes] = []
        heard = False
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        raise TimeoutError(errno.ETIMEDOUT, "timed out")
                    sock.settimeout(remaining)
                    data = sock.recv(_RECV_SIZE)
                    heard = heard or bool(data)
                    h.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionResetError(errno.ECONNRESET, "connection closed before the answer")
        except (TimeoutError, _stdsocket.timeout):
            raise ConnectFailed("token: timeout") from None
        except h11.RemoteProtocolError as exc:
            if not heard:
                raise _Unanswered("token: connection closed before the answer") from None
            raise ConnectFailed("token: malformed HTTP answer", str(exc)[:200]) from None
        except OSError as exc:
            if not heard:
                raise _Unanswered(f"token: {_os_reason(exc)}") from None
            raise ConnectFailed(f"token: {_os_reason(exc)}") from None
        reusable = h.our_state is h11.DONE and h.their_state is h11.DONE
        if reusable:
            h.start_next_cycle()
        return status, b"".join(chunks), reusable

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class WebSocket:
    """An open client WebSocket over one socket, driven in its owner's greenlet.

    ``recv(timeout)`` returns one whole message (bytes for text and binary
    alike: orjson parses bytes directly), or ``None`` when the timeout
    passes; it raises ``ConnectionEnded`` once the connection is over, with
    the code, reason and initiator taken from the close frames actually
    exchanged. Pings from the server are answered inside ``recv``.

    This class drives a plain TCP socket (the real, non-blocking one, with
    one read watcher); ``_GeventSocketWebSocket`` drives a gevent socket
    (TLS). Only ``_recv_data``, ``_send_data``, ``_shutdown_wr``,
    ``_close_socket`` and ``abort`` touch the socket.
    """

    __slots__ = ("_sock", "_proto", "_events", "_parts", "_ended", "close_timeout", "send_timeout",
                 "leftover", "_rw", "_reset", "arrived_at", "_binary", "_violation")

    def __init__(self, sock: Any, proto: ClientProtocol, pending: list[Any], close_timeout: float,
                 send_timeout: float = 10.0, read_watcher: Any = None) -> None:
        self._sock = sock
        self._proto = proto
        #: Frames parsed but not yet handed out; a plain list (usually empty
        #: or one frame): a deque costs ~600 bytes per idle connection.
        self._events: list[Any] = pending
        self._parts: list[bytes] | None = None
        self._ended: ConnectionEnded | None = None
        self.close_timeout = close_timeout
        self.send_timeout = send_timeout
        #: Messages that arrived while we were closing: the caller still
        #: counts them (the server sent them; the harness must not lose them).
        self.leftover: list[bytes] | tuple[()] = ()  # a list once there is one
        self._rw = read_watcher
        #: the peer reset the connection (RST), as opposed to closing it (FIN)
        self._reset = False
        #: ``time.perf_counter()`` when the bytes of the message ``recv`` last
        #: returned were read: the frames of one read share it, however long
        #: the ones before them took to process (answering a burst of pings)
        self.arrived_at: float | None = None
        #: the fragmented message being assembled is binary
        self._binary = False
        #: (kind, what) of a violation found above websockets' parser (invalid UTF-8)
        self._violation: tuple[str, str] | None = None

    # -- the socket ------------------------------------------------------------

    def _recv_data(self, timeout: float | None) -> bytes | None:
        """Some bytes; b"" at EOF or reset; None when ``timeout`` passed first.

        Waits for readability first instead of trying a read: ``recv`` is only
        called once the frames of the last read are used up, so the socket
        is nearly always empty then, and a would-block read costs a system
        call plus an exception, where the wait shares the loop's one
        ``epoll_wait`` with every other guest (data already there is
        reported on the next loop iteration).
        """
        sock = self._sock
        while True:
            if not _wait(self._rw, timeout):
                return None
            try:
                return sock.recv(_RECV_SIZE)  # type: ignore[no-any-return]
            except BlockingIOError:
                continue  # woken without data: wait again
            except OSError:
                self._reset = True
                return b""  # reset by peer: EOF without a close frame

    def _send_data(self, data: bytes) -> None:
        """Write all of ``data``; OSError if the peer is gone or stops reading for ``send_timeout``."""
        sock = self._sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        deadline = _monotonic() + self.send_timeout
        watcher = get_hub().loop.io(sock.fileno(), _EV_WRITE)
        try:
            while view:
                remaining = deadline - _monotonic()
                if remaining <= 0 or not _wait(watcher, remaining):
                    raise TimeoutError(errno.ETIMEDOUT, "send timed out")
                try:
                    view = view[sock.send(view):]
                except BlockingIOError:
                    continue
        finally:
            watcher.close()

    def _shutdown_wr(self) -> None:
        try:
            self._sock.shutdown(_stdsocket.SHUT_WR)
        except OSError:
            pass

    def _close_socket(self) -> None:
        rw = self._rw
        if rw is not None:
            self._rw = None
            rw.close()
        try:
            self._sock.close()
        except OSError:
            pass

    # -- sending ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send one text frame (``data`` is UTF-8 JSON already)."""
        if self._ended is not None:
            raise self._ended
        proto = self._proto
        if proto.state is not _OPEN:
            raise self._finish()
        proto.send_text(data)
        self._flush()

    def _flush(self) -> None:
        for chunk in self._proto.data_to_send():
            if chunk:
                try:
                    self._send_data(chunk)
                except OSError:
                    # The peer is gone; what it sent before going (maybe a
                    # close frame) is still in our receive buffer.
                    self._drain_after_error()
                    raise self._finish() from None
            else:  # SEND_EOF: half-close
                self._shutdown_wr()

    # -- receiving -------------------------------------------------------------

    def recv(self, timeout: float | None) -> bytes | None:
        if self._ended is not None:
            raise self._ended
        events = self._events
        deadline = None if timeout is None else _monotonic() + max(0.0, timeout)
        proto = self._proto
        while True:
            while events:
                msg = self._on_event(events.pop(0))
                if msg is not None:
                    if type(msg) is not BinaryFrame and not msg.isascii() and not is_utf8(msg):
                        # RFC 6455 §8.1: text that is not UTF-8 fails the connection, 1007.
                        self._violation = (INVALID_UTF8, "invalid UTF-8 in a text message")
                        proto.fail(1007, "invalid UTF-8")
                        raise self._finish()
                    return msg
            if proto.close_rcvd is not None or proto.parser_exc is not None or proto.state is _CLOSED:
                raise self._finish()
            if deadline is None:
                remaining = None
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return None
            if not self._read(remaining):
                return None

    def _read(self, timeout: float | None) -> bool:
        """Read once and feed the protocol; False on timeout."""
        data = self._recv_data(timeout)
        if data is None:
            return False
        self.arrived_at = _perf_counter()
        proto = self._proto
        if data:
            proto.receive_data(data)
        else:
            proto.receive_eof()
        events = proto.events_received()
        if events:
            self._events.extend(events)
        if proto.writes:  # pongs, a close echo, EOF
            self._flush_quietly()
        return True

    def _flush_quietly(self) -> None:
        """Send what the protocol owes the peer (pongs, a close echo)."""
        for chunk in self._proto.data_to_send():
            try:
                if chunk:
                    self._send_data(chunk)
                else:
                    self._shutdown_wr()
            except OSError:
                pass

    def _on_event(self, frame: Any) -> bytes | None:
        """A whole message from a frame, or None; binary messages come as ``BinaryFrame``."""
        opcode = frame.opcode
        if opcode is _TEXT:
            if frame.fin:
                return frame.data  # type: ignore[no-any-return]
            self._parts = [frame.data]
            self._binary = False
        elif opcode is _BINARY:
            if frame.fin:
                return BinaryFrame(frame.data)
            self._parts = [frame.data]
            self._binary = True
        elif opcode is _CONT and self._parts is not None:
            self._parts.append(frame.data)
            if frame.fin:
                data, self._parts = b"".join(self._parts), None
                return BinaryFrame(data) if self._binary else data
        # PING is answered by the protocol; PONG and CLOSE need nothing here.
        return None

    def _drain_after_error(self) -> None:
        proto = self._proto
        deadline = _monotonic() + 0.05
        while proto.close_rcvd is None:
            data = self._recv_data(max(0.0, deadline - _monotonic()))
            if not data:
                break
            proto.receive_data(data)
        proto.receive_eof()
        proto.events_received()

    def _finish(self) -> ConnectionEnded:
        """Settle how the connection ended, release the socket, remember it."""
        if self._ended is not None:
            return self._ended
        proto = self._proto
        exc = proto.parser_exc
        violation = self._violation
        if violation is None and exc is not None and proto.close_rcvd is None and not isinstance(exc, EOFError):
            kind = TOO_BIG if isinstance(exc, PayloadTooBig) else (
                INVALID_UTF8 if isinstance(exc, UnicodeDecodeError) else BAD_FRAMING)
            violation = (kind, str(exc))
        if violation is not None:
            # We failed the connection: the protocol queued our close frame
            # (unless ours was out already: then that one is what the wire
            # had); send it and stop.
            self._flush_quietly()
            sent = proto.close_sent
            code, reason = (sent.code, sent.reason) if sent is not None else (1006, "")
            self._ended = TargetProtocolError(code, reason, "client", violation[0], violation[1])
            self._close_socket()
            return self._ended
        if proto.close_rcvd is not None and proto.state is not _CLOSED:
            self._wait_for_eof()
        # Who closed first: the same rule as the gateway's record (loadkit.closes),
        # from our side; a reset after our unanswered close is a lost link.
        ended = attribute_close("client", proto.close_sent, proto.close_rcvd, proto.close_rcvd_then_sent,
                                link_lost=self._reset)
        self._ended = ConnectionEnded(ended.code, ended.reason, ended.initiator)
        self._close_socket()
        return self._ended

    def _wait_for_eof(self) -> None:
        """RFC 6455: after the close handshake the server closes TCP first."""
        deadline = _monotonic() + self.close_timeout
        while self._proto.state is not _CLOSED:
            remaining = deadline - _monotonic()
            if remaining <= 0 or not self._read(remaining):
                break

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
        if proto.state is _OPEN:
            proto.send_close(code, reason)
            try:
                for chunk in proto.data_to_send():
                    if chunk:
                        self._send_data(chunk)
            except OSError:
                self._reset = True  # our close frame never left: the link was already gone
                self._drain_after_error()
                return self._finish()
        if wait:
            deadline = _monotonic() + self.close_timeout
            while proto.close_rcvd is None and proto.state is not _CLOSED:
                remaining = deadline - _monotonic()
                if remaining <= 0 or not self._read(remaining):
                    break
        events = self._events
        while events:
            msg = self._on_event(events.pop(0))
            if msg is not None:
                if not self.leftover:
                    self.leftover = []
                self.leftover.append(msg)  # type: ignore[union-attr]
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


class _GeventSocketWebSocket(WebSocket):
    """The same WebSocket over a gevent socket: used for TLS (``wss://``)."""

    __slots__ = ()

    def _recv_data(self, timeout: float | None) -> bytes | None:
        sock = self._sock
        sock.settimeout(timeout)
        try:
            return sock.recv(_RECV_SIZE)  # type: ignore[no-any-return]
        except (TimeoutError, _stdsocket.timeout):
            return None
        except OSError:
            self._reset = True
            return b""

    def _send_data(self, data: bytes) -> None:
        sock = self._sock
        sock.settimeout(self.send_timeout)
        sock.sendall(data)


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
        #: connections per token endpoint (how many at once: see ``_HttpEndpoint``)
        self.http_pool = http_pool
        self._http_endpoints: dict[tuple[str, str, int], _HttpEndpoint] = {}
        self._resolver = _Resolver()
        #: Off (None) for load: then nothing below costs anything.
        self.trace = trace
        self._log: dict[str, Any] = {} if trace is None else {"logger": _FrameLog(trace)}

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
            endpoint = self._http_endpoints[key] = _HttpEndpoint(host, port, ctx, self.http_pool, self._resolver)
        target = url.path or "/"
        if url.query:
            target += "?" + url.query
        return endpoint.request(request.method, target, list(request.headers), request.body or b"",
                                self.open_timeout, self.http_timeout)

    # -- WebSocket -------------------------------------------------------------

    def connect(self, url: str, headers: list[tuple[str, str]] | None = None,
                timeout: float | None = None) -> WebSocket:
        """TCP (+TLS), the HTTP upgrade, and wait until the socket is open."""
        timeout = self.open_timeout if timeout is None else timeout
        deadline = _monotonic() + timeout
        try:
            wsuri = parse_uri(url)
        except InvalidURI as exc:
            raise ConnectFailed(f"invalid URL: {exc}") from None
        try:
            raw = self._tcp_connect(wsuri.host, wsuri.port, deadline)
        except ConnectionRefusedError:
            raise ConnectRefused("websocket") from None
        except (TimeoutError, _stdsocket.timeout):
            raise ConnectFailed("TCP connect timeout") from None
        except OSError as exc:
            raise ConnectFailed(_os_reason(exc)) from None
        ws: WebSocket | None = None
        sock: Any = raw
        try:
            raw.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
            proto = ClientProtocol(wsuri, max_size=self.max_size, **self._log)
            if wsuri.secure:
                ctx = self.ssl_context or ssl.create_default_context()
                sock = gsocket.socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
                sock.settimeout(max(0.001, deadline - _monotonic()))
                sock = ctx.wrap_socket(sock, server_hostname=wsuri.host)
                if self.trace is not None:
                    self.trace("tls", _tls_fields(sock))
                ws = _GeventSocketWebSocket(sock, proto, [], self.close_timeout, self.open_timeout)
            else:
                ws = WebSocket(raw, proto, [], self.close_timeout, self.open_timeout,
                               get_hub().loop.io(raw.fileno(), _EV_READ))
            request = proto.connect()
            for name, value in headers or ():
                request.headers[name] = value
            if self.trace is not None:
                self.trace("upgrade_request", {"path": request.path, "headers": list(request.headers.raw_items())})
            proto.send_request(request)
            for chunk in proto.data_to_send():
                ws._send_data(chunk)
            try:
                self._await_upgrade(ws, proto, deadline)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    raise
                # The harness is stopping mid-upgrade. Leave like a client
                # should, so the gateway records a close, not a lost link:
                # finish the upgrade briefly and close 1001.
                exc.loadkit_close = self._leave_during_upgrade(ws, proto)  # type: ignore[attr-defined]
                raise
            return ws
        except ssl.SSLError as exc:
            _close_quietly(ws, sock)
            if self.trace is not None:
                self.trace("tls_failed", {"reason": exc.reason or exc.__class__.__name__,
                                          "verify_message": getattr(exc, "verify_message", None)})
            raise ConnectFailed(f"TLS: {exc.reason or exc.__class__.__name__}") from None
        except (ConnectFailed, UpgradeRefused):
            _close_quietly(ws, sock)
            raise
        except OSError as exc:
            _close_quietly(ws, sock)
            raise ConnectFailed(_os_reason(exc)) from None
        except BaseException:
            _close_quietly(ws, sock)
            raise

    def _tcp_connect(self, host: str, port: int, deadline: float) -> Any:
        """A connected non-blocking socket (the real one, not gevent's wrapper).

        Like ``socket.create_connection``: each address in turn, the last
        error if none answers; ``TimeoutError`` at ``deadline``.
        """
        last: OSError | None = None
        addresses = self._resolver.addresses(host, port, max(0.0, deadline - _monotonic()))
        trace = self.trace
        if trace is not None:
            trace("dns", {"host": host, "addresses": [addr[0] for _fam, addr in addresses]})
        for family, address in addresses:
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                err = sock.connect_ex(address)
                if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                    watcher = get_hub().loop.io(sock.fileno(), _EV_WRITE)
                    try:
                        if not _wait(watcher, max(0.0, deadline - _monotonic())):
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
                    trace("tcp_failed", {"address": address[0], "port": address[1], "error": _os_reason(exc)})
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
        except Exception:
            return None  # failed or timed out: nothing was opened
        return ws.close(1001, "harness stopping", wait=True)

    def _await_upgrade(self, ws: WebSocket, proto: ClientProtocol, deadline: float) -> None:
        """Read until the upgrade is answered; ConnectFailed/UpgradeRefused if it isn't 101.

        websockets' ``ClientProtocol`` reads the response, then parses frames
        from inside a generator that keeps the ``Response`` (headers and
        all) alive for the life of the connection: about 2 KB per idle
        guest. So it is fed the response head only; once it says OPEN, the
        connection goes on with a plain ``Protocol`` (the same frame parser
        and state machine, without the handshake) fed the bytes after the
        head. Anything else (a refusal with a body, a malformed head) is fed
        to ``ClientProtocol`` whole, which reports it as before.
        """
        fed_tail = b""  # the last 3 bytes fed, to find a CRLFCRLF split across reads
        in_head = True
        while proto.state is WsState.CONNECTING:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise ConnectFailed("upgrade timeout")
            data = ws._recv_data(remaining)
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
                    if proto.state is WsState.OPEN and proto.handshake_exc is None:
                        head = proto.events_received()  # the Response: not needed
                        if self.trace is not None:
                            _trace_responses(self.trace, head)
                        opened = Protocol(Side.CLIENT, state=WsState.OPEN, max_size=self.max_size, **self._log)
                        ws._proto = opened
                        if rest:
                            opened.receive_data(rest)
                            ws._events.extend(opened.events_received())
                        return
                    if rest:
                        proto.receive_data(rest)
            else:
                proto.receive_data(data)
            for event in proto.events_received():
                if not isinstance(event, Response):
                    ws._events.append(event)
                elif self.trace is not None:
                    _trace_responses(self.trace, [event])
            if proto.handshake_exc is not None:
                exc = proto.handshake_exc
                if isinstance(exc, InvalidStatus):
                    raise UpgradeRefused(exc.response.status_code)
                raise ConnectFailed(f"upgrade failed: {exc.__class__.__name__}", _handshake_reason(exc))
            if not data and proto.state is WsState.CONNECTING:
                raise ConnectFailed("connection closed during the upgrade")

    def close(self) -> None:
        for endpoint in self._http_endpoints.values():
            endpoint.close()
        self._http_endpoints.clear()


class _FrameLog:
    """websockets' own hook for watching a connection (its ``logger``), as trace events.

    websockets logs every frame it parses or queues (``"< %s"`` / ``"> %s"``
    with the ``Frame``), pongs and close echoes included, so a tracer sees
    exactly what crossed the wire without a second parser.
    """

    def __init__(self, trace: Trace) -> None:
        self._trace = trace

    def isEnabledFor(self, level: int) -> bool:  # logging's name
        return True

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], Frame):
            self._trace("frame_sent" if msg.startswith(">") else "frame_received", _frame_fields(args[0]))
        elif msg in ("< EOF", "> EOF"):
            self._trace("eof_received" if msg.startswith("<") else "eof_sent", {})

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        pass

    warning = error = exception = info


def _frame_fields(frame: Frame) -> dict[str, Any]:
    fields: dict[str, Any] = {"opcode": frame.opcode.name.lower(), "data": bytes(frame.data), "fin": frame.fin}
    if frame.opcode is _CLOSE:
        try:
            close = Close.parse(frame.data)
            fields["code"], fields["reason"] = close.code, close.reason
        except (ProtocolError, ValueError):  # a malformed close frame: websockets fails the connection
            fields["code"], fields["reason"] = None, ""
    return fields


def _trace_responses(trace: Trace, events: list[Any]) -> None:
    for event in events:
        if isinstance(event, Response):
            trace("upgrade_response", {"status": event.status_code, "reason": event.reason_phrase,
                                       "headers": list(event.headers.raw_items()), "body": bytes(event.body or b"")})


def _tls_fields(sock: Any) -> dict[str, Any]:
    cipher = sock.cipher()
    cert = sock.getpeercert() or {}
    subject = ", ".join("=".join(part) for rdn in cert.get("subject", ()) for part in rdn)
    issuer = ", ".join("=".join(part) for rdn in cert.get("issuer", ()) for part in rdn)
    return {"version": sock.version(), "cipher": cipher[0] if cipher else None, "subject": subject,
            "issuer": issuer, "not_after": cert.get("notAfter")}


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


def _close_quietly(ws: WebSocket | None, sock: Any) -> None:
    if ws is not None:
        ws._close_socket()
        return
    try:
        sock.close()
    except OSError:
        pass


if TYPE_CHECKING:
    def _conforms(transport: GeventTransport, ws: WebSocket, tls: _GeventSocketWebSocket) -> None:
        """mypy's check that the real transport provides what the driver declares it needs."""
        _t: Transport = transport
        _c: Connection = ws
        _s: Connection = tls
