"""Frames a broken target sends: the gateway's anomaly faults, as settings and as bytes.

Why the gateway can misbehave at the frame level: a harness pointed at
pre-release gateways meets broken servers by design, and "every anomalous
frame counted, by kind" is only believable once it has been checked against
a server that says exactly how many of each it sent. So each kind of frame
the harness classifies as bad (``loadkit/protocol/base.py``, the
``BAD_FRAME_KINDS``) has a fault here that produces it, and
``/_gateway/stats`` counts each one injected.

Every anomaly is put on the wire in the same write as ``auth_ok`` (so the
client reads them together, in a phase the harness can name: ``bare_auth_ok``
before it, during auth; every other kind after it, just after auth), and a
session gets at most one of them: one anomaly per session keeps the counts
separable by kind even when the first one ends the session. The bytes are
written as they are, bypassing websockets' frame writer, because no library
writes a text frame of invalid UTF-8 or one with a reserved bit set.

Pure: the settings, the kinds, the bytes, and the ping flood's record.
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

__all__ = ["ANOMALY_KINDS", "AnomalySettings", "FloodRecord", "auth_ok_write", "server_frame"]

#: Each kind, in the fixed order of its slice of the session's one anomaly draw.
ANOMALY_KINDS = ("binary_frame", "unmatched_pong", "unmatched_ack", "bare_auth_ok", "not_json", "not_object",
                 "unknown_type", "too_deep", "invalid_utf8", "reserved_bits", "bad_opcode")

MAX_FLOOD = 30_000
"""Pings of one flood: 2 bytes each, so the flood and auth_ok fit in one 64 KiB read of the client's."""

_TEXT, _BINARY, _PING = 0x1, 0x2, 0x9


def server_frame(opcode: int, payload: bytes = b"", rsv: int = 0) -> bytes:
    """One final, unmasked frame (server to client), exactly as given: nothing is checked."""
    head = 0x80 | (rsv & 0x7) << 4 | (opcode & 0xF)
    n = len(payload)
    if n < 126:
        return bytes((head, n)) + payload
    if n < 1 << 16:
        return bytes((head, 126)) + struct.pack("!H", n) + payload
    return bytes((head, 127)) + struct.pack("!Q", n) + payload


#: What each kind writes after auth_ok (``bare_auth_ok`` writes before it).
_AFTER: dict[str, bytes] = {
    "binary_frame": server_frame(_BINARY, b'{"type":"typing"}'),
    "unmatched_pong": server_frame(_TEXT, b'{"type":"pong","id":-1}'),
    "unmatched_ack": server_frame(_TEXT, b'{"type":"ack","id":"never-sent","ts":0}'),
    "not_json": server_frame(_TEXT, b"this is not JSON"),
    "not_object": server_frame(_TEXT, b"[1,2,3]"),
    "unknown_type": server_frame(_TEXT, b'{"type":"surprise"}'),
    "too_deep": server_frame(_TEXT, b"[" * 1100 + b"]" * 1100),
    "invalid_utf8": server_frame(_TEXT, b'{"type":"message","text":"\xff\xfe"}'),
    "reserved_bits": server_frame(_TEXT, b'{"type":"typing"}', rsv=0b100),
    "bad_opcode": server_frame(0x3, b"?"),
}
_BARE_AUTH_OK = server_frame(_TEXT, b'{"type":"auth_ok"}')
_PING_FRAME = server_frame(_PING)


def auth_ok_write(auth_ok: bytes, anomaly: str | None, pings: int) -> bytes:
    """The one write that answers an auth frame: ``pings`` pings, the anomaly, ``auth_ok``.

    ``auth_ok`` is the frame's JSON text. The pings come first, so the client
    reads them in the same read as the answer it is timing.
    """
    head = _PING_FRAME * pings
    if anomaly == "bare_auth_ok":
        head += _BARE_AUTH_OK
    tail = _AFTER[anomaly] if anomaly is not None and anomaly != "bare_auth_ok" else b""
    return head + server_frame(_TEXT, auth_ok) + tail


@dataclass(frozen=True)
class AnomalySettings:
    """The ``[faults.anomalies]`` table: fractions of sessions, 0..1; all off by default.

    The kinds are exclusive (a session gets at most one), so their fractions
    must sum to at most 1; ``ping_flood`` is independent of them (a flood is
    not a bad frame: it tests how the client times the answer after it).
    """

    binary_frame: float = 0.0
    """A binary frame where the protocol says text (harness: binary_frame, ends the session 1003)."""
    unmatched_pong: float = 0.0
    """A pong for a ping id never sent (harness: unmatched_answer)."""
    unmatched_ack: float = 0.0
    """An ack for a message id never sent (harness: unmatched_answer)."""
    bare_auth_ok: float = 0.0
    """An auth_ok with none of its fields, before the real one (harness: missing_fields, during auth)."""
    not_json: float = 0.0
    """A text frame that is not JSON (harness: not_json, ends the session 1007)."""
    not_object: float = 0.0
    """JSON that is not an object (harness: not_object, ends the session 1007)."""
    unknown_type: float = 0.0
    """A JSON object of no type the protocol has (harness: unknown_type)."""
    too_deep: float = 0.0
    """JSON nested 1100 deep (harness: too_deep, ends the session 1007)."""
    invalid_utf8: float = 0.0
    """A text frame that is not UTF-8 (harness: invalid_utf8; RFC 6455 §8.1: it fails the connection, 1007)."""
    reserved_bits: float = 0.0
    """A text frame with RSV1 set, no extension agreed (harness: bad_framing; it fails the connection, 1002)."""
    bad_opcode: float = 0.0
    """A frame with the reserved opcode 0x3 (harness: bad_framing; it fails the connection, 1002)."""
    ping_flood: float = 0.0
    """Fraction of sessions whose auth_ok comes after ping_flood_size RFC 6455 pings, in one write."""
    ping_flood_size: int = 1000
    """Pings of one flood, 1..30000."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "ping_flood_size" and not 0.0 <= value <= 1.0:
                raise ValueError(f"faults.anomalies.{f.name} must be a fraction between 0 and 1 (got {value})")
        total = sum(getattr(self, kind) for kind in ANOMALY_KINDS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"faults.anomalies: a session gets at most one anomaly, so the fractions of "
                             f"{', '.join(ANOMALY_KINDS)} must sum to at most 1 (got {total:g})")
        if not 1 <= self.ping_flood_size <= MAX_FLOOD:
            raise ValueError(f"faults.anomalies.ping_flood_size must be 1..{MAX_FLOOD} (got {self.ping_flood_size})")

    def pick(self, u: float) -> str | None:
        """The anomaly of a session whose draw is ``u`` (uniform in [0, 1)): its kind's slice, or none."""
        edge = 0.0
        for kind in ANOMALY_KINDS:
            edge += getattr(self, kind)
            if u < edge:
                return kind
        return None


class FloodRecord:
    """What the gateway measured of its ping floods, for ``faults.ping_flood`` in the stats.

    ``auth_ms``: from reading the auth frame to writing the flood and auth_ok
    (the gateway's own auth delay, planned delays included). ``first_pong_ms``:
    from that write to the first pong back, which the client can only send
    once it has read and parsed the whole flood. A client that timed auth_ok
    when it got round to it, instead of when it read it, would report an auth
    latency above ``auth_ms`` by about that parsing time.
    Minimums and maximums (``*_min``/``*_max``) merge across gateway processes
    as such (``stats.merge_snapshots``); ``None`` until there is a value.
    """

    def __init__(self) -> None:
        self.sessions = 0
        self.pings = 0
        self.pongs = 0
        self.auth_ms: tuple[float, float] | None = None
        self.first_pong_ms: tuple[float, float] | None = None

    def flooded(self, pings: int, auth_ms: float) -> None:
        self.sessions += 1
        self.pings += pings
        self.auth_ms = _widen(self.auth_ms, auth_ms)

    def pong(self, first_pong_ms: float | None) -> None:
        """A pong came back; ``first_pong_ms`` when it is its session's first."""
        self.pongs += 1
        if first_pong_ms is not None:
            self.first_pong_ms = _widen(self.first_pong_ms, first_pong_ms)

    def as_dict(self) -> dict[str, int | float | None]:
        auth = self.auth_ms or (None, None)
        pong = self.first_pong_ms or (None, None)
        return {"sessions": self.sessions, "pings": self.pings, "pongs": self.pongs,
                "auth_ms_min": auth[0], "auth_ms_max": auth[1],
                "first_pong_ms_min": pong[0], "first_pong_ms_max": pong[1]}


def _widen(span: tuple[float, float] | None, value: float) -> tuple[float, float]:
    value = round(value, 3)
    return (value, value) if span is None else (min(span[0], value), max(span[1], value))
