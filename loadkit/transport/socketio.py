"""The socket under a WebSocket: plain TCP on the real non-blocking socket, or TLS on gevent's.

Split from the frame logic (loadkit/transport/websocket.py) so that only
these methods touch a socket: ``_recv_data``, ``_poll_data``, ``_send_data``,
``_shutdown_wr``, ``_close_socket`` and ``abort``.
"""

from __future__ import annotations

import errno
import socket as _stdsocket
import time
from typing import Any

from loadkit.errors import ConnectionEnded
from loadkit.transport.waiting import wait, write_watcher

_RECV_SIZE = 65536
_monotonic = time.monotonic


class SocketIO:
    """Plain TCP: the real non-blocking socket and its one read watcher."""

    __slots__ = ("_sock", "_rw", "_reset", "_ended", "send_timeout")

    def __init__(self, sock: Any, read_watcher: Any, send_timeout: float) -> None:
        self._sock = sock
        self._rw = read_watcher
        #: the peer reset the connection (RST), as opposed to closing it (FIN)
        self._reset = False
        #: how the connection ended, once it has
        self._ended: ConnectionEnded | None = None
        self.send_timeout = send_timeout

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
            if not wait(self._rw, timeout):
                return None
            try:
                return sock.recv(_RECV_SIZE)  # type: ignore[no-any-return]
            except BlockingIOError:
                continue  # woken without data: wait again
            except OSError:
                self._reset = True
                return b""  # reset by peer: EOF without a close frame

    def _poll_data(self) -> bytes | None:
        """What has already arrived, without waiting (None: nothing has); b"" at EOF or reset."""
        try:
            return self._sock.recv(_RECV_SIZE)  # type: ignore[no-any-return]
        except BlockingIOError:
            return None
        except OSError:
            self._reset = True
            return b""

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
        watcher = write_watcher(sock.fileno())
        try:
            while view:
                remaining = deadline - _monotonic()
                if remaining <= 0 or not wait(watcher, remaining):
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

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed client)."""
        try:
            self._sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        except OSError:
            pass
        self._close_socket()
        self._ended = ConnectionEnded(1006, "", "none")


class TlsSocketIO(SocketIO):
    """TLS: a gevent ``SSLSocket`` (the SSL layer has its own want-read/want-write dance)."""

    __slots__ = ()

    def _recv_data(self, timeout: float | None) -> bytes | None:
        sock = self._sock
        sock.settimeout(timeout)
        try:
            return sock.recv(_RECV_SIZE)  # type: ignore[no-any-return]
        except TimeoutError:
            return None
        except OSError:
            self._reset = True
            return b""

    def _poll_data(self) -> bytes | None:
        # TLS records may sit in the SSL layer's buffer as well as the socket's:
        # not looked at before our close (the server's close is then read after it).
        return None

    def _send_data(self, data: bytes) -> None:
        sock = self._sock
        sock.settimeout(self.send_timeout)
        sock.sendall(data)
