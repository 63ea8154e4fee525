"""An open ``WebSocket`` against crafted server frames, over a real loopback TCP connection.

In the style of websockets' own protocol tests: the client side is the
harness's ``WebSocket`` exactly as ``connect`` leaves it after the upgrade
(the real non-blocking socket, its read watcher, no ``Protocol`` until one
is needed); the server side is a plain socket the test writes raw bytes to
and reads the client's frames from (parsed by websockets' server side,
which also checks they are masked). Each test puts one thing on the wire
and checks what the transport yields: the message, the close code and who
closed, or the bad-frame kind, and what it answered on the wire.
"""

from __future__ import annotations

import _socket
import struct
import time
from collections.abc import Iterator

import gevent
import pytest
from gevent import socket as gsocket
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from loadkit.errors import ConnectionEnded, TargetProtocolError
from loadkit.protocol.base import BAD_FRAMING, INVALID_UTF8, TOO_BIG, BinaryFrame
from loadkit.transport.waiting import read_watcher
from loadkit.transport.websocket import WebSocket
from tests.rawserver import binary, close, frame, ping, text

pytestmark = pytest.mark.timeout(30)

#: long enough for a loopback write to be readable, short enough to keep the tests fast
SETTLE_S = 0.05


class Peer:
    """The server's end: raw bytes out, the client's frames in (unmasked by websockets' server side)."""

    def __init__(self, sock: gsocket.socket) -> None:
        self.sock = sock
        self.proto = Protocol(Side.SERVER, state=State.OPEN, max_size=None)
        self.frames: list[Frame] = []
        self.eof = False

    def send(self, *raw: bytes) -> None:
        self.sock.sendall(b"".join(raw))

    def send_until_reset(self, *raw: bytes) -> None:
        """Send what the client may refuse half-way: it fails the connection and drops TCP."""
        try:
            self.send(*raw)
        except OSError:
            pass

    def received(self, wait_s: float = SETTLE_S) -> list[Frame]:
        """Every client frame that has arrived within ``wait_s`` (all of them, in order)."""
        self.sock.settimeout(wait_s)
        while not self.eof:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                break
            except OSError:
                data = b""
            if not data:
                self.eof = True
                self.proto.receive_eof()
            else:
                self.proto.receive_data(data)
            self.frames.extend(self.proto.events_received())
            self.sock.settimeout(0.01)
        return self.frames

    def closes(self) -> list[tuple[int, str]]:
        return [(c.code, c.reason) for c in (Close.parse(f.data) for f in self.received()
                                             if f.opcode is Opcode.CLOSE)]


@pytest.fixture
def conn() -> Iterator[tuple[WebSocket, Peer]]:
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    client.setblocking(False)
    client.connect_ex(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    ws = WebSocket(client, None, 1 << 16, close_timeout=0.5, send_timeout=2.0,
                   read_watcher=read_watcher(client.fileno()))
    peer = Peer(server)
    yield ws, peer
    ws.abort()
    server.close()


def messages(ws: WebSocket, wait_s: float = SETTLE_S) -> list[bytes]:
    """Every message the transport hands out until it has nothing for ``wait_s``."""
    out = []
    while (msg := ws.recv(wait_s)) is not None:
        out.append(msg)
    return out


def violation(ws: WebSocket) -> TargetProtocolError:
    with pytest.raises(TargetProtocolError) as caught:
        messages(ws, 1.0)
    return caught.value


# -- messages --------------------------------------------------------------------------


def test_whole_text_and_binary_frames_are_messages_binary_ones_marked(conn: tuple[WebSocket, Peer]) -> None:
    ws, peer = conn
    peer.send(text(b'{"type":"ack"}'), binary(b"\x00\xff"), text(b"x" * 300), text("é ā 😀"))
    got = messages(ws)
    assert got == [b'{"type":"ack"}', b"\x00\xff", b"x" * 300, "é ā 😀".encode()]
    assert [type(m) is BinaryFrame for m in got] == [False, True, False, False]
    assert ws.arrived_at is not None and not ws.closed


def test_a_fragmented_message_with_a_ping_between_its_fragments_is_one_message_and_the_ping_is_answered(
        conn: tuple[WebSocket, Peer]) -> None:
    ws, peer = conn
    peer.send(frame(Opcode.TEXT, b"hel", fin=False), ping(b"p1"), frame(Opcode.CONT, b"lo ", fin=False),
              frame(Opcode.CONT, b"world"), frame(Opcode.BINARY, b"\x01", fin=False), frame(Opcode.CONT, b"\x02"))
    got = messages(ws)
    assert got == [b"hello world", b"\x01\x02"] and type(got[1]) is BinaryFrame
    assert [(f.opcode, bytes(f.data)) for f in peer.received()] == [(Opcode.PONG, b"p1")]


def test_frames_cut_anywhere_across_reads_are_read_whole(conn: tuple[WebSocket, Peer]) -> None:
    """Mid-frame, the next read may begin with bytes that look like a whole text frame (a binary
    payload, a length byte 0x81): only websockets may read on from there."""
    ws, peer = conn
    long = ("ā" * 70).encode()  # 140 bytes: a 16-bit length, a payload full of 0x81
    stream = [text(b"a"), ping(b"z"), binary(b"\x81\x03abc"), text(long), text(b"b" * 129), text(b"c")]
    wire = b"".join(stream)
    expected = [b"a", b"\x81\x03abc", long, b"b" * 129, b"c"]
    starts = [sum(map(len, stream[:i])) for i in range(len(stream))]
    # every cut inside each frame's head and the first bytes of its payload, and just before it
    cuts = sorted({start + k for start in starts for k in range(-1, 6)} - {-1, 0})
    for cut in cuts:
        peer.send(wire[:cut])
        got = messages(ws, 0.01)
        peer.send(wire[cut:])
        # the rest, waited for message by message (a message too many shows in the next cut's
        # first read, or after the last cut here), not for a quiet spell after each cut
        while len(got) < len(expected) and (msg := ws.recv(5.0)) is not None:
            got.append(msg)
        assert got == expected, f"cut at {cut}"
        assert type(got[1]) is BinaryFrame, f"cut at {cut}"
    assert messages(ws) == []
    assert [f.opcode for f in peer.received()].count(Opcode.PONG) == len(cuts) and not ws.closed


def test_a_ping_flood_is_answered_ping_for_ping_and_the_message_behind_it_still_comes(
        conn: tuple[WebSocket, Peer]) -> None:
    ws, peer = conn
    peer.send(*(ping(str(i).encode()) for i in range(2000)), text(b'{"type":"ack"}'))
    assert messages(ws, 0.5) == [b'{"type":"ack"}']
    pongs = [bytes(f.data) for f in peer.received(0.5) if f.opcode is Opcode.PONG]
    assert pongs == [str(i).encode() for i in range(2000)]


def test_what_the_client_sends_is_one_masked_text_frame_per_message_small_or_large(
        conn: tuple[WebSocket, Peer]) -> None:
    ws, peer = conn
    big = b"y" * 70000  # over the direct writer's 16-bit length: websockets writes it
    ws.send(b'{"type":"ping","id":"p-1"}')
    sender = gevent.spawn(ws.send, big)  # the server reads while it is written
    frames = peer.received(0.3)
    sender.get(timeout=5)
    frames = peer.received(0.1)
    assert [(f.opcode, f.fin, bytes(f.data)) for f in frames] == [
        (Opcode.TEXT, True, b'{"type":"ping","id":"p-1"}'), (Opcode.TEXT, True, big)]
    assert peer.proto.parser_exc is None  # websockets' server side requires client frames masked


# -- ends ------------------------------------------------------------------------------


def test_the_servers_close_ends_the_connection_as_the_servers_and_is_echoed(conn: tuple[WebSocket, Peer]) -> None:
    ws, peer = conn
    peer.send(text(b"last"), close(4001, "bye"))
    assert ws.recv(1.0) == b"last"
    gevent.spawn_later(0.05, peer.sock.shutdown, _socket.SHUT_WR)  # the server closes TCP after the handshake
    with pytest.raises(ConnectionEnded) as caught:
        ws.recv(1.0)
    ended = caught.value
    assert (type(ended), ended.code, ended.reason, ended.initiator) == (ConnectionEnded, 4001, "bye", "server")
    assert peer.closes() == [(4001, "bye")]  # the echo
    with pytest.raises(ConnectionEnded):
        ws.send(b"too late")


def test_tcp_closed_without_a_close_frame_is_a_lost_link_1006(conn: tuple[WebSocket, Peer]) -> None:
    ws, peer = conn
    peer.sock.shutdown(_socket.SHUT_WR)
    with pytest.raises(ConnectionEnded) as caught:
        ws.recv(1.0)
    assert (type(caught.value), caught.value.code, caught.value.initiator) == (ConnectionEnded, 1006, "none")


def test_our_close_keeps_what_arrived_before_the_servers_answer(conn: tuple[WebSocket, Peer]) -> None:
    ws, peer = conn
    peer.send(text(b"in flight"))
    gevent.sleep(SETTLE_S)

    def answer() -> None:
        assert peer.closes() == [(1000, "done")]
        peer.send(close(1000, "done"))
        peer.sock.shutdown(_socket.SHUT_WR)

    server = gevent.spawn(answer)
    before = time.perf_counter()
    ended = ws.close(1000, "done", wait=True)
    server.get(timeout=5)
    assert (ended.code, ended.reason, ended.initiator) == (1000, "done", "client")
    ((data, at),) = ws.leftover
    assert data == b"in flight" and ws.closed
    assert at is not None and before <= at <= time.perf_counter()  # when it was read: for timing an answer


def test_a_server_close_that_arrived_before_ours_is_the_servers_close(conn: tuple[WebSocket, Peer]) -> None:
    """The guest was busy when the server's close came in; closing now, it answers that close, not its own."""
    ws, peer = conn
    peer.send(text(b"before"), close(1001, "idle timeout"))
    gevent.sleep(SETTLE_S)  # in our socket, not yet read
    gevent.spawn_later(SETTLE_S, peer.sock.shutdown, _socket.SHUT_WR)
    ended = ws.close(1001, "harness stopping", wait=True)
    assert (ended.code, ended.reason, ended.initiator) == (1001, "idle timeout", "server")
    assert peer.closes() == [(1001, "idle timeout")]  # the echo, and no close of our own
    assert [data for data, _at in ws.leftover] == [b"before"]


# -- what the target must not send (RFC 6455): failed with the right code, counted by kind ----


@pytest.mark.parametrize(("raw", "code", "kind"), [
    (frame(Opcode.TEXT, b"hi", rsv=4), 1002, BAD_FRAMING),  # RSV1 with no extension
    (frame(Opcode.TEXT, b"hi", rsv=1), 1002, BAD_FRAMING),  # RSV3
    (frame(0x3, b"?"), 1002, BAD_FRAMING),  # reserved data opcode
    (frame(0xB, b"?"), 1002, BAD_FRAMING),  # reserved control opcode
    (Frame(Opcode.TEXT, b"masked").serialize(mask=True), 1002, BAD_FRAMING),  # a server must not mask
    (ping(b"p" * 126), 1002, BAD_FRAMING),  # a control frame over 125 bytes
    (frame(Opcode.PING, b"p", fin=False), 1002, BAD_FRAMING),  # a fragmented control frame
    (frame(Opcode.CONT, b"orphan"), 1002, BAD_FRAMING),  # a continuation with no message begun
    (frame(Opcode.TEXT, b"a", fin=False) + text(b"b"), 1002, BAD_FRAMING),  # a new message mid-message
    (frame(Opcode.CLOSE, struct.pack("!H", 999)), 1002, BAD_FRAMING),  # a close code no one may send
    (frame(Opcode.CLOSE, struct.pack("!H", 1005)), 1002, BAD_FRAMING),  # 1005 is never on the wire
    (frame(Opcode.CLOSE, b"\x03"), 1002, BAD_FRAMING),  # a one-byte close payload
    (frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"), 1007, INVALID_UTF8),  # reason not UTF-8
    (text(b"\xc3\x28"), 1007, INVALID_UTF8),  # a text message that is not UTF-8
    (frame(Opcode.TEXT, b"\xe2\x82", fin=False) + frame(Opcode.CONT, b"\x28"), 1007, INVALID_UTF8),
    (text(b"x" * (1 << 16 | 1)), 1009, TOO_BIG),  # over the connection's limit (64 KiB here)
])
def test_a_violation_fails_the_connection_with_its_code_and_is_a_bad_frame_of_its_kind(
        conn: tuple[WebSocket, Peer], raw: bytes, code: int, kind: str) -> None:
    ws, peer = conn
    sender = gevent.spawn(peer.send_until_reset, text(b"before"), raw)
    assert ws.recv(1.0) == b"before"
    ended = violation(ws)
    sender.get(timeout=5)
    assert (ended.code, ended.initiator, ended.kind) == (code, "client", kind)
    assert [c for c, _reason in peer.closes()] == [code]  # and that close frame is what went on the wire
    assert ws.closed
    with pytest.raises(TargetProtocolError):
        ws.recv(0.01)  # the same end, every time it is asked
