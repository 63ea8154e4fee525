"""The common case of RFC 6455 framing, written directly: whole, final text frames.

Nearly every frame a chat session moves is one small text frame: an ack, a
pong, an agent message in; a message or ping out. websockets' sans-I/O
``Protocol`` handles every frame through a general parser (a generator over
a stream reader, a ``Frame`` object, its checks, the event list) and every
send through ``Frame.serialize`` and a 4-byte ``os.urandom`` call; per frame
that was most of a round trip's CPU in the harness (35 µs to parse one ack
and 16 µs to send one message, against 1.5 and 3.4 µs here). So the
transport tries these two functions first and hands everything else to
websockets untouched: a control frame, a fragment, reserved bits, a masked
or oversized frame, a frame split across reads, anything traced. The
property tests (tests/test_transport_frames.py) hold both to websockets'
own parser and serializer.
"""

from __future__ import annotations

import os
import struct

try:  # websockets' C masking, as its own frames module does; its pure-Python one otherwise
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover (a build without the C extension)
    from websockets.utils import apply_mask

_pack_short = struct.Struct("!BB").pack
_pack_mid = struct.Struct("!BBH").pack
#: first byte of a final, unfragmented text frame with no reserved bits
_FIN_TEXT = 0x81
#: payloads at or above this take websockets' path (a 64-bit length)
LARGEST_DIRECT = 0xFFFF


def plain_text_frames(data: bytes, limit: int | None) -> list[bytes] | None:
    """The payloads when ``data`` is only whole, final, unmasked text frames under 64 KiB; else None.

    ``limit`` is the connection's largest message (websockets' ``max_size``):
    a frame over it returns None, so websockets fails the connection with
    1009 as it would have. Call this only at a frame boundary (no partial
    frame buffered, no fragmented message in progress): a whole text frame
    is then exactly what RFC 6455 allows next.
    """
    out = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] != _FIN_TEXT or pos + 2 > end:
            return None
        n = data[pos + 1]
        if n < 126:
            start = pos + 2
        elif n == 126 and pos + 4 <= end:
            n = (data[pos + 2] << 8) | data[pos + 3]
            start = pos + 4
        else:  # masked (a server must not mask: websockets fails it), a 64-bit length, or cut short
            return None
        stop = start + n
        if stop > end or (limit is not None and n > limit):
            return None
        out.append(data[start:stop])
        pos = stop
    return out


class MaskKeys:
    """Client masking keys from the OS's random source, 4 KB at a time.

    RFC 6455 §5.3 asks for keys "derived from a strong source of entropy";
    websockets asks ``os.urandom`` for 4 bytes per frame, a system call
    each. One pool per process: a key is used once, whichever connection
    takes it.
    """

    __slots__ = ("_pool", "_at")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._at = at + 4
        return self._pool[at:at + 4]


_keys = MaskKeys()


def masked_text_frame(data: bytes) -> bytes:
    """One final, masked client text frame carrying ``data`` (shorter than 64 KiB).

    Byte for byte what websockets' ``send_text`` writes without extensions,
    with a fresh key.
    """
    n = len(data)
    key = _keys.take()
    head = _pack_short(_FIN_TEXT, 0x80 | n) if n < 126 else _pack_mid(_FIN_TEXT, 0xFE, n)
    return head + key + apply_mask(data, key)
