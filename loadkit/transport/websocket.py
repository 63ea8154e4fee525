"""An open client WebSocket over one socket, driven in its owner's greenlet.

websockets' sans-I/O ``Protocol`` does the RFC 6455 work (masking,
fragmentation checks, answering pings, the close handshake). Two things are
done here instead, for cost: whole text frames at a frame boundary are read
and written directly (loadkit/transport/frames.py), and the ``Protocol``
itself is made only when a frame needs it. A fresh ``Protocol`` in the OPEN
state is exactly what a connection that has only exchanged whole text
frames would hold (no close sent or received, no fragment, nothing owed),
so an idle guest that has only seen text frames keeps no ``Protocol`` (its
parser generators, stream buffer, uuid and lists: about 2 KB) until its
first control frame, fragment, big frame or close.
"""

from __future__ import annotations

import time
from typing import Any

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side
from websockets.protocol import State as WsState
from websockets.streams import StreamReader

from loadkit.closes import attribute_close
from loadkit.errors import ConnectionEnded, TargetProtocolError
from loadkit.protocol.base import BAD_FRAMING, INVALID_UTF8, TOO_BIG, BinaryFrame, is_utf8
from loadkit.transport.frames import LARGEST_DIRECT, masked_text_frame, plain_text_frames
from loadkit.transport.socketio import SocketIO, TlsSocketIO

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_OPEN, _CLOSED = WsState.OPEN, WsState.CLOSED
_monotonic = time.monotonic
_perf_counter = time.perf_counter  # the session driver's clock (GeventTransport.now)
#: websockets' parser waits here between frames (and only there): see ``_at_frame_boundary``
_AT_EOF_CODE = StreamReader.at_eof.__code__


def _at_frame_boundary(proto: Protocol) -> bool:
    """websockets' parser has consumed whole frames only, nothing of the next one.

    Its ``parse`` generator waits in ``StreamReader.at_eof`` between frames
    and in ``read_exact`` inside one (a header read, the payload still to
    come: an empty buffer alone does not tell). Should a websockets release
    wait elsewhere, this is False and every frame simply goes through
    websockets: slower, never wrong.
    """
    inner = getattr(proto.parser, "gi_yieldfrom", None)
    return inner is not None and getattr(inner, "gi_code", None) is _AT_EOF_CODE


class WebSocket(SocketIO):
    """An open client WebSocket (``loadkit.connection.Connection``).

    ``recv(timeout)`` returns one whole message (bytes for text and binary
    alike: orjson parses bytes directly), or ``None`` when the timeout
    passes; it raises ``ConnectionEnded`` once the connection is over, with
    the code, reason and initiator taken from the close frames actually
    exchanged. Pings from the server are answered inside ``recv``.

    This class drives a plain TCP socket (the real, non-blocking one, with
    one read watcher); ``TlsWebSocket`` drives a gevent socket (TLS). Only
    ``_recv_data``, ``_send_data``, ``_shutdown_wr``, ``_close_socket`` and
    ``abort`` touch the socket.
    """

    __slots__ = ("_proto", "_max_size", "_events", "_parts", "close_timeout", "leftover", "arrived_at",
                 "_binary", "_violation")

    def __init__(self, sock: Any, proto: Protocol | None, max_size: int | None, close_timeout: float,
                 send_timeout: float = 10.0, read_watcher: Any = None) -> None:
        super().__init__(sock, read_watcher, send_timeout)
        #: websockets' state machine, or None while a fresh one would do (see the module's docstring)
        self._proto = proto
        self._max_size = max_size
        #: Messages (bytes) and websockets frames read but not yet handed out;
        #: a plain list (usually empty or one item): a deque costs ~600 bytes per idle connection.
        self._events: list[Any] = []
        self._parts: list[bytes] | None = None
        self.close_timeout = close_timeout
        #: Messages that arrived while we were closing, each with the
        #: ``perf_counter`` time its bytes were read: the caller still counts
        #: them (the server sent them; the harness must not lose them), and
        #: an answer among them is timed from when it arrived.
        self.leftover: list[tuple[bytes, float | None]] | tuple[()] = ()  # a list once there is one
        #: ``time.perf_counter()`` when the bytes of the message ``recv`` last
        #: returned were read: the frames of one read share it, however long
        #: the ones before them took to process (answering a burst of pings)
        self.arrived_at: float | None = None
        #: the fragmented message being assembled is binary
        self._binary = False
        #: (kind, what) of a violation found above websockets' parser (invalid UTF-8)
        self._violation: tuple[str, str] | None = None

    def _protocol(self) -> Protocol:
        proto = self._proto
        if proto is None:
            proto = self._proto = Protocol(Side.CLIENT, state=_OPEN, max_size=self._max_size)
        return proto

    # -- the opening handshake (loadkit/transport/handshake.py drives it) -------

    def handshake_read(self, timeout: float | None) -> bytes | None:
        """Bytes of the upgrade answer: as ``_recv_data``."""
        return self._recv_data(timeout)

    def handshake_write(self, data: bytes) -> None:
        self._send_data(data)

    def handshake_frames(self, frames: list[Any]) -> None:
        """Frames websockets parsed with the upgrade answer (before OPEN was seen): hand them out."""
        self._events.extend(frames)

    def handshake_done(self, proto: Protocol | None, rest: bytes) -> None:
        """The upgrade succeeded: go on with ``proto`` (None: made when needed) and the bytes after the head."""
        self._proto = proto
        if rest:
            self._take(rest)

    def discard(self) -> None:
        """Release the socket of a connection that never opened."""
        self._close_socket()

    # -- sending ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send one text frame (``data`` is UTF-8 JSON already)."""
        if self._ended is not None:
            raise self._ended
        proto = self._proto
        if proto is not None:
            if proto.state is not _OPEN:
                raise self._finish()
            if proto.debug or proto.writes:  # traced (websockets logs every frame), or queued behind
                proto.send_text(data)
                self._flush()
                return
        if len(data) > LARGEST_DIRECT:
            self._protocol().send_text(data)
            self._flush()
            return
        try:
            self._send_data(masked_text_frame(data))
        except OSError:
            # The peer is gone; what it sent before going (maybe a close
            # frame) is still in our receive buffer.
            self._drain_after_error()
            raise self._finish() from None

    def _flush(self) -> None:
        for chunk in self._protocol().data_to_send():
            if chunk:
                try:
                    self._send_data(chunk)
                except OSError:
                    self._drain_after_error()
                    raise self._finish() from None
            else:  # SEND_EOF: half-close
                self._shutdown_wr()

    # -- receiving -------------------------------------------------------------

    def recv(self, timeout: float | None) -> bytes | None:
        if self._ended is not None:
            raise self._ended
        events = self._events
        deadline = None
        while True:
            while events:
                item = events.pop(0)
                msg = item if item.__class__ is bytes else self._on_event(item)
                if msg is not None:
                    if msg.__class__ is not BinaryFrame and not msg.isascii() and not is_utf8(msg):
                        # RFC 6455 §8.1: text that is not UTF-8 fails the connection, 1007.
                        self._violation = (INVALID_UTF8, "invalid UTF-8 in a text message")
                        self._protocol().fail(1007, "invalid UTF-8")
                        raise self._finish()
                    return msg
            proto = self._proto
            if proto is not None and (proto.close_rcvd is not None or proto.parser_exc is not None
                                      or proto.state is _CLOSED):
                raise self._finish()
            if timeout is None:
                remaining = None
            elif deadline is None:
                if timeout <= 0:
                    return None
                remaining = timeout
                deadline = _monotonic() + timeout
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return None
            if not self._read(remaining):
                return None

    def _read(self, timeout: float | None) -> bool:
        """Read once and take in what came; False on timeout."""
        data = self._recv_data(timeout)
        if data is None:
            return False
        self._arrived(data)
        return True

    def _arrived(self, data: bytes) -> None:
        """Take in bytes just read (b"": the server's EOF), stamped with when they came."""
        self.arrived_at = _perf_counter()
        if data:
            self._take(data)
        else:
            self._taken(self._protocol(), eof=True)

    def _take(self, data: bytes) -> None:
        """Bytes from the server: whole text frames directly when at a frame boundary, else websockets."""
        proto = self._proto
        if proto is None or (proto.state is _OPEN and proto.current_size is None and not proto.debug
                             and _at_frame_boundary(proto)):
            texts = plain_text_frames(data, self._max_size)
            if texts is not None:
                self._events.extend(texts)
                return
            if proto is None:
                proto = self._protocol()
        proto.receive_data(data)
        self._taken(proto)

    def _taken(self, proto: Protocol, eof: bool = False) -> None:
        """What websockets made of the bytes (or the EOF) it was fed: frames to hand out, answers owed."""
        if eof:
            proto.receive_eof()
        events = proto.events_received()
        if events:
            self._events.extend(events)
        if proto.writes:  # pongs, a close echo, EOF
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        """Send what the protocol owes the peer (pongs, a close echo)."""
        for chunk in self._protocol().data_to_send():
            try:
                if chunk:
                    self._send_data(chunk)
                else:
                    self._shutdown_wr()
            except OSError:
                pass

    def _on_event(self, frame: Frame) -> bytes | None:
        """A whole message from a websockets frame, or None; binary messages come as ``BinaryFrame``."""
        opcode = frame.opcode
        if opcode is _TEXT:
            if frame.fin:
                return frame.data  # type: ignore[return-value]
            self._parts = [frame.data]  # type: ignore[list-item]
            self._binary = False
        elif opcode is _BINARY:
            if frame.fin:
                return BinaryFrame(frame.data)
            self._parts = [frame.data]  # type: ignore[list-item]
            self._binary = True
        elif opcode is _CONT and self._parts is not None:
            self._parts.append(frame.data)  # type: ignore[arg-type]
            if frame.fin:
                data, self._parts = b"".join(self._parts), None
                return BinaryFrame(data) if self._binary else data
        # PING is answered by the protocol; PONG and CLOSE need nothing here.
        return None

    def _drain_after_error(self) -> None:
        proto = self._protocol()
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
        proto = self._protocol()
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
        proto = self._protocol()
        while proto.state is not _CLOSED:
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
        proto = self._protocol()
        self._keep_leftover()  # read before the close and not handed out yet: stamped with that read
        if proto.state is _OPEN:
            self._take_arrived()
            self._keep_leftover()
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
                self._keep_leftover()
        return self._finish()

    def _keep_leftover(self) -> None:
        """The messages read but not handed out, into ``leftover`` with when their bytes were read."""
        events = self._events
        at = self.arrived_at
        while events:
            item = events.pop(0)
            msg = item if item.__class__ is bytes else self._on_event(item)
            if msg is not None:
                if not self.leftover:
                    self.leftover = []
                self.leftover.append((msg, at))

    def _take_arrived(self) -> None:
        """Take in what the server sent before our close: if its own close is there, it closed first.

        A guest's greenlet can be descheduled for a while with the server's
        close (an idle timeout, say) waiting in the socket; closing without
        looking would call the close ours, where the server's record says it
        was the server's. One read, without waiting: a server still sending
        must not hold our close.
        """
        data = self._poll_data()
        if data is not None:
            self._arrived(data)

    @property
    def closed(self) -> bool:
        return self._ended is not None


class TlsWebSocket(TlsSocketIO, WebSocket):
    """The same WebSocket over a gevent socket: used for TLS (``wss://``)."""

    __slots__ = ()
