"""What both session kinds (guest and webmessaging) do to a connection on a fault."""

from __future__ import annotations

import socket
import struct
from typing import Any

from .faults import DropCode, drop_reason


async def inject_drop(conn: Any, code: DropCode, stats: Any) -> None:
    """An injected drop: a close frame with the planned code, or a TCP reset.

    A reset sets SO_LINGER 0 first, so closing sends RST (no FIN, no close
    frame) and the client sees 1006.
    """
    stats.drops[str(code)] += 1
    if code == "reset":
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.transport.abort()
        await conn.wait_closed()
    else:
        await conn.close(int(code), drop_reason(int(code)))
