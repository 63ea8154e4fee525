"""The token call: keep-alive HTTP/1.1 on h11, with the harness's own wait measured apart."""

from __future__ import annotations

import _socket
import errno
import socket as _stdsocket
import ssl
import time
from typing import Any, NamedTuple

import h11
from gevent import select as gselect
from gevent import socket as gsocket
from gevent.lock import Semaphore

from loadkit.errors import ConnectFailed, ConnectRefused
from loadkit.transport.resolver import Address, Resolver
from loadkit.transport.waiting import os_reason

_RECV_SIZE = 65536
_monotonic = time.monotonic
#: Connections per token endpoint at once. A request beyond that waits for a
#: slot (harness wait, bounded by the connect timeout).
HTTP_POOL = 256


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


class Unanswered(ConnectFailed):
    """The connection failed before any byte of an answer: safe to retry on a new one."""


class HttpConn:
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


class HttpEndpoint:
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
                 resolver: Resolver) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.size = size
        self.slots = Semaphore(size)
        self.idle: list[HttpConn] = []
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
                except Unanswered:
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

    def _resolve(self, deadline: float) -> list[Address]:
        try:
            return self.resolver.addresses(self.host, self.port, max(0.0, deadline - _monotonic()))
        except TimeoutError:
            raise HarnessBusy("token: name resolution took longer than the connect timeout") from None
        except OSError as exc:  # the name does not resolve: the target's address is wrong
            raise ConnectFailed(f"token: name resolution: {os_reason(exc)}") from None

    def _open(self, addrs: list[Address], deadline: float) -> HttpConn:
        last: Exception | None = None
        for family, address in addrs:
            sock = gsocket.socket(family, _socket.SOCK_STREAM)
            try:
                sock.settimeout(max(0.001, deadline - _monotonic()))
                sock.connect(address)
                sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
                if self.ssl_context is not None:
                    sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
                return HttpConn(sock)
            except ConnectionRefusedError as exc:
                sock.close()
                last = exc
            except ssl.SSLError as exc:
                sock.close()
                raise ConnectFailed(f"token: TLS: {exc.reason or exc.__class__.__name__}") from None
            except TimeoutError:
                sock.close()
                last = ConnectFailed("token: TCP connect timeout")
            except OSError as exc:
                sock.close()
                last = ConnectFailed(f"token: {os_reason(exc)}")
            except BaseException:
                sock.close()
                raise
        if isinstance(last, ConnectionRefusedError) or last is None:
            raise ConnectRefused("token")
        raise last

    def _exchange(self, conn: HttpConn, method: str, target: str, headers: list[tuple[str, str]],
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
        except TimeoutError:
            raise ConnectFailed("token: timeout") from None
        except OSError as exc:
            raise Unanswered(f"token: {os_reason(exc)}") from None
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
        except TimeoutError:
            raise ConnectFailed("token: timeout") from None
        except h11.RemoteProtocolError as exc:
            if not heard:
                raise Unanswered("token: connection closed before the answer") from None
            raise ConnectFailed("token: malformed HTTP answer", str(exc)[:200]) from None
        except OSError as exc:
            if not heard:
                raise Unanswered(f"token: {os_reason(exc)}") from None
            raise ConnectFailed(f"token: {os_reason(exc)}") from None
        reusable = h.our_state is h11.DONE and h.their_state is h11.DONE
        if reusable:
            h.start_next_cycle()
        return status, b"".join(chunks), reusable

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
