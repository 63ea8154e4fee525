"""A scripted WebSocket server on loopback that can put any bytes on the wire.

The reference gateway is well-behaved unless a fault says otherwise; to see
what the harness does with frames no library would send (reserved bits,
invalid UTF-8 in a text frame, a ping burst in the same TCP segment as an
answer), tests script a server here: websockets' sans-I/O ``ServerProtocol``
does the upgrade and parses what the client sends, and the script writes
whatever raw frames it wants. One thread per connection; everything is
stopped when the ``with`` block ends.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """A server frame (unmasked) exactly as given: no validation of any kind."""
    head = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    n = len(payload)
    if n < 126:
        return bytes([head, n]) + payload
    if n < 1 << 16:
        return bytes([head, 126]) + struct.pack("!H", n) + payload
    return bytes([head, 127]) + struct.pack("!Q", n) + payload


def text(payload: bytes | str) -> bytes:
    return frame(Opcode.TEXT, payload.encode() if isinstance(payload, str) else payload)


def binary(payload: bytes) -> bytes:
    return frame(Opcode.BINARY, payload)


def close(code: int = 1000, reason: str = "") -> bytes:
    return frame(Opcode.CLOSE, struct.pack("!H", code) + reason.encode())


def ping(payload: bytes = b"") -> bytes:
    return frame(Opcode.PING, payload)


class Conn:
    """One accepted connection, after the upgrade: read client frames, write raw bytes."""

    def __init__(self, sock: socket.socket, proto: ServerProtocol) -> None:
        self.sock = sock
        self.proto = proto
        self.frames: list[Frame] = []
        self.received: list[Frame] = []  # every client frame, in order

    def next_frame(self, timeout: float = 5.0) -> Frame | None:
        """The client's next frame (control frames included), or None at EOF/timeout."""
        self.sock.settimeout(timeout)
        while not self.frames:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                self.proto.receive_eof()
                return None
            self.proto.receive_data(data)
            self.frames.extend(e for e in self.proto.events_received() if isinstance(e, Frame))
            self.proto.data_to_send()  # we write only what the script says
        got = self.frames.pop(0)
        self.received.append(got)
        return got

    def next_text(self, timeout: float = 5.0) -> bytes | None:
        """The client's next data frame's payload (control frames skipped), None when it closed."""
        while True:
            got = self.next_frame(timeout)
            if got is None or got.opcode is Opcode.CLOSE:
                return None
            if got.opcode in (Opcode.TEXT, Opcode.BINARY):
                return bytes(got.data)

    def send(self, *raw: bytes) -> None:
        """Write these bytes in one ``sendall`` (one read, usually, on loopback)."""
        self.sock.sendall(b"".join(raw))

    def wait_close(self, timeout: float = 5.0) -> Frame | None:
        """Read until the client's close frame (returned) or EOF (None)."""
        while True:
            got = self.next_frame(timeout)
            if got is None or got.opcode is Opcode.CLOSE:
                return got


Script = Callable[[Conn], Any]


class RawServer:
    """``with RawServer(script) as srv: ... srv.url``; each connection runs ``script(conn)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.socks: list[socket.socket] = []
        self._stop = False

    def __enter__(self) -> RawServer:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc: Any) -> None:
        for t in self.threads[1:]:  # let scripts finish what the client already sent them
            t.join(2)
        self._stop = True
        try:  # wake the accept() at once rather than at its next timeout (up to 0.1 s per server)
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.listener.close()
        for s in list(self.socks):
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(5)

    def _accept(self) -> None:
        self.listener.settimeout(0.1)  # a closed listener does not wake a blocked accept()
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._stop:  # the wake-up connection from __exit__
                sock.close()
                return
            self.socks.append(sock)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        proto = ServerProtocol(max_size=None)
        try:
            sock.settimeout(5)
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                proto.receive_data(data)
                requests = [e for e in proto.events_received() if isinstance(e, Request)]
                if requests:
                    break
            proto.send_response(proto.accept(requests[0]))
            sock.sendall(b"".join(proto.data_to_send()))
            self.script(Conn(sock, proto))
        except BaseException as exc:  # reported by the test, never swallowed
            if not self._stop:
                self.errors.append(exc)
        finally:
            try:
                sock.close()
            except OSError:
                pass
