"""Where a fault decision meets the wire: what a session does to its connection.

``faults.py`` decides (purely, from the seed and the session's number) *what*
happens to a session; this module is *how* it is done to a real connection.
The decisions are applied at four places, and a new fault belongs at one of
them:

- the upgrade (``server.Gateway.admit``): refuse, stall, slow handshake;
- the auth frame (``guest.GuestSession.authenticate``): silent close, auth
  latency, degradation, and (``send_auth_ok``) the anomalous frames and ping
  flood written raw with auth_ok (``anomalies.py``);
- each accepted message (``guest.GuestSession.on_message`` and the Web
  Messaging socket's ``on_message``): ack and agent delays, out-of-order acks
  (a ``faults.MessagePlan`` per message);
- a session's deadline (``sessions.Session.drop``): the planned drop.
"""

from __future__ import annotations

import socket
import struct

from websockets.asyncio.server import ServerConnection

from .faults import DropCode, drop_reason
from .stats import GatewayStats

__all__ = ["drop"]


async def drop(conn: ServerConnection, code: DropCode, stats: GatewayStats) -> None:
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
