"""The transport's own frame reader and writer agree with websockets', byte for byte.

``plain_text_frames`` takes a read only when all of it is whole, final,
unmasked text frames; anything else goes to websockets untouched. These
tests cut random streams of every kind of frame at random points and check,
chunk by chunk, that whenever the direct reader answers, websockets' own
``Protocol`` parses the same bytes into the same messages and nothing else;
and that every frame the direct writer makes is one websockets' server side
reads back as the same text, masked with a fresh key.
"""

from __future__ import annotations

import random

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from loadkit.transport import frames
from loadkit.transport.frames import MaskKeys, masked_text_frame, plain_text_frames


def server_frames(rng: random.Random, n: int) -> list[bytes]:
    """``n`` frames as a server sends them: text (most), binary, pings, fragments, RSV bits set."""
    raw: list[bytes] = []
    for _ in range(n):
        kind = rng.randrange(10)
        size = rng.choice([0, 1, 60, 125, 126, 127, 300, 65535, 65536, 70000])
        data = (bytes(rng.randrange(32, 127) for _ in range(min(size, 200))) * max(1, size // 200))[:size]
        if kind < 6:
            raw.append(Frame(Opcode.TEXT, data).serialize(mask=False))
        elif kind == 6:
            raw.append(Frame(Opcode.BINARY, data).serialize(mask=False))
        elif kind == 7:
            raw.append(Frame(Opcode.PING, data[:100]).serialize(mask=False))
        elif kind == 8:  # a fragmented text message
            raw.append(Frame(Opcode.TEXT, data[: size // 2], fin=False).serialize(mask=False)
                       + Frame(Opcode.CONT, data[size // 2:]).serialize(mask=False))
        else:  # RSV1 without an extension that defines it: websockets fails the connection
            wire = bytearray(Frame(Opcode.TEXT, data).serialize(mask=False))
            wire[0] |= 0x40
            raw.append(bytes(wire))
    return raw


def websockets_reads(chunk: bytes, limit: int | None) -> list[tuple[Opcode, bool, bytes]]:
    proto = Protocol(Side.CLIENT, state=State.OPEN, max_size=limit)
    proto.receive_data(chunk)
    events = [(f.opcode, f.fin, bytes(f.data)) for f in proto.events_received()]
    if proto.parser_exc is not None or proto.reader.buffer:
        events.append((Opcode.CLOSE, True, b"(error or partial)"))
    return events


@pytest.mark.parametrize("seed", range(20))
def test_whenever_the_direct_reader_answers_websockets_reads_the_same_messages(seed: int) -> None:
    rng = random.Random(seed)
    raw = server_frames(rng, 30)
    stream = b"".join(raw)
    chunks = []
    pos = 0
    while pos < len(stream):  # reads cut anywhere
        cut = min(len(stream), pos + rng.choice([1, 2, 3, 64, 200, 1000, 70000]))
        chunks.append(stream[pos:cut])
        pos = cut
    i = 0
    while i < len(raw):  # reads of one to three whole frames
        k = rng.randrange(1, 4)
        chunks.append(b"".join(raw[i:i + k]))
        i += k
    taken = 0
    for chunk in chunks:
        limit = rng.choice([None, 1 << 20, 100])
        fast = plain_text_frames(chunk, limit)
        if fast is not None:
            taken += 1
            assert websockets_reads(chunk, limit) == [(Opcode.TEXT, True, m) for m in fast]
    assert taken  # and the direct reader does take some reads


def test_whole_text_frames_are_taken_and_everything_else_is_left_to_websockets() -> None:
    ack = Frame(Opcode.TEXT, b'{"type":"ack","id":"c-1"}').serialize(mask=False)
    mid = Frame(Opcode.TEXT, b"x" * 300).serialize(mask=False)
    assert plain_text_frames(ack + mid + ack, None) == [b'{"type":"ack","id":"c-1"}', b"x" * 300,
                                                        b'{"type":"ack","id":"c-1"}']
    assert plain_text_frames(ack[:-1], None) is None  # partial
    assert plain_text_frames(mid[:3], None) is None  # a 16-bit length cut short
    assert plain_text_frames(ack + Frame(Opcode.PING, b"").serialize(mask=False), None) is None
    assert plain_text_frames(Frame(Opcode.TEXT, b"hi").serialize(mask=True), None) is None  # masked by a server
    assert plain_text_frames(Frame(Opcode.TEXT, b"a", fin=False).serialize(mask=False), None) is None
    assert plain_text_frames(Frame(Opcode.TEXT, b"x" * 70000).serialize(mask=False), None) is None
    assert plain_text_frames(mid, 299) is None  # over max_size: websockets closes 1009
    assert plain_text_frames(mid, 300) == [b"x" * 300]
    assert plain_text_frames(b"", None) == []


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535])
def test_a_direct_text_frame_is_what_websockets_server_reads_back(size: int) -> None:
    data = bytes(32 + (i * 7) % 95 for i in range(size))
    wire = masked_text_frame(data)
    assert wire[1] & 0x80  # masked, as RFC 6455 §5.3 requires of a client
    server = Protocol(Side.SERVER, state=State.OPEN, max_size=None)
    server.receive_data(wire)
    [frame] = server.events_received()
    assert (frame.opcode, frame.fin, frame.rsv1, bytes(frame.data)) == (Opcode.TEXT, True, False, data)
    assert server.parser_exc is None and not server.reader.buffer
    # the same length encoding websockets uses: only the key and the masked payload differ
    theirs = Frame(Opcode.TEXT, data).serialize(mask=True)
    assert len(theirs) == len(wire) and theirs[:2] == wire[:2]


def test_masking_keys_are_fresh_random_bytes_fetched_4_kb_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = frames.os.urandom

    def counting(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(frames.os, "urandom", counting)
    keys = MaskKeys()
    drawn = [keys.take() for _ in range(2048)]
    assert all(len(k) == 4 for k in drawn)
    assert len(set(drawn)) > 2000  # 2048 draws of 32 random bits: collisions are rare
    assert calls == [4096, 4096]  # one system call per 1,024 frames
