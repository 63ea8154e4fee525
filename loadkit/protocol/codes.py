"""WebSocket close codes as data: names, the guest protocol's meanings.

Close codes are numbers on the wire but decisions in a harness; keeping their
meaning in one table means the summary, the report and the tests all say the
same thing about a 4008.
"""

from __future__ import annotations

#: 1006 is never sent on the wire: it stands for "no close frame at all".
NO_CLOSE_FRAME = 1006

CLOSE_CODE_NAMES: dict[int, str] = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure (no close frame)",
    1007: "invalid payload",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
    4001: "unauthorized",
    4003: "forbidden",
    4006: "session expired",
    4008: "auth timeout",
    4029: "rate limit",
}


def describe(code: int) -> str:
    """``1000 (normal closure)``; unknown application codes say so."""
    name = CLOSE_CODE_NAMES.get(code)
    if name is None:
        name = "application code" if 4000 <= code <= 4999 else "unknown"
    return f"{code} ({name})"
