"""The one part of the harness that owns sockets, gevent and timeouts.

Why not websockets' threaded client: under gevent it costs three file
descriptors and ~36 KB per idle guest (a socketpair for its background
thread, plus the socket), which caps one process near 6.6k guests under a
20,000-descriptor limit. Here websockets' sans-I/O protocol is driven
directly over one non-blocking socket and one gevent read watcher, in the
greenlet of the guest that owns it: one descriptor, no extra greenlet, no
thread emulation (``wss://`` uses gevent's SSL socket). websockets does the
RFC 6455 work (masking, fragmentation checks, answering pings, the close
handshake); this package moves bytes, enforces deadlines, and reads and
writes the one common frame (a whole text frame) directly.

Everything the session driver needs from the outside world is here, behind
``GeventTransport`` (typed by ``loadkit.connection.Transport``): a clock,
sleep, one HTTP request (the token call) and ``connect``. Replacing the
transport (a different I/O model, a recorder for tests) means replacing
that object; lifecycle and metrics never notice.

The modules, by job:

- ``gevent_transport``: ``GeventTransport``, the object the driver holds;
- ``token``: the token call (keep-alive HTTP/1.1 on h11, a bounded pool);
- ``handshake``: TCP (+TLS) and the WebSocket upgrade (``Dialer``);
- ``websocket``: an open connection's frames and its close (``WebSocket``);
- ``socketio``: the socket under it (plain TCP, or TLS);
- ``frames``: whole text frames read and written directly;
- ``waiting``: a watcher with a deadline, without gevent's exceptions;
- ``resolver``: name resolution with a short cache;
- ``tracing``: what ``loadkit probe`` sees of each step.
"""

from __future__ import annotations

from loadkit.transport.gevent_transport import GeventTransport
from loadkit.transport.token import HTTP_POOL, HarnessBusy, HttpAnswer
from loadkit.transport.tracing import Trace
from loadkit.transport.websocket import TlsWebSocket, WebSocket

__all__ = ["GeventTransport", "WebSocket", "TlsWebSocket", "HttpAnswer", "HarnessBusy", "HTTP_POOL", "Trace"]
