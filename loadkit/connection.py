"""What the session driver needs from its transport, declared.

``SessionDriver`` (loadkit/session/) never touches a socket, an event
loop or a timer: it asks a ``Transport`` for the time, a pause, the token
call and a WebSocket ``Connection``, and reads frames from that. Writing
the contract down here, as ``typing.Protocol`` classes, does three jobs:

- mypy checks that ``GeventTransport`` (loadkit/transport/) provides all
  of it, structurally: no base class to inherit, no registration;
- a test can drive a whole session over a scripted fake with a fake clock
  (tests/test_session_driver.py), no sockets and no gevent, and know it
  fakes exactly what the real transport offers;
- the next engineer who changes what the driver uses changes it here, in
  one place, and the type checker shows every transport that falls behind.

This module is pure (no I/O, no gevent): it sits with the layers below the
transport so both the driver and the transport can import it.

How a connection reports its end is part of the contract: ``send`` and
``recv`` raise ``ConnectionEnded`` (or its ``TargetProtocolError``) once the
connection is over, with the close code, reason and initiator of the close
frames actually exchanged; ``close`` returns that same record instead of
raising. ``connect`` and ``http`` raise ``ConnectRefused``, ``ConnectFailed``
or ``UpgradeRefused`` (loadkit/errors.py) when the target did not let us in.
A stop that interrupts ``connect`` is raised on, and how the half-made
connection was left is recorded on the ``ConnectAttempt`` the driver passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from loadkit.errors import ConnectionEnded, UpgradeRefused
from loadkit.protocol.base import TokenRequest


class ConnectAttempt:
    """How an interrupted connect left the connection it was making; the driver holds one per connect.

    A stop (gevent's ``GreenletExit``) that arrives mid-upgrade must still
    end the session with what the wire saw: the transport finishes the
    upgrade briefly and closes 1001 (unless the target refused it first),
    then raises the stop on. ``connect`` cannot return that record while
    raising, so it writes it here, on an object its caller made and reads in
    its own handler: declared and typed, instead of an attribute on the
    exception.
    """

    __slots__ = ("left",)

    def __init__(self) -> None:
        #: the close of the connection left behind, the target's refusal, or
        #: None (not interrupted, or nothing was opened)
        self.left: ConnectionEnded | UpgradeRefused | None = None


class HttpResult(Protocol):
    """The token endpoint's answer, with where the time went (``transport.HttpAnswer``)."""

    @property
    def status(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    #: seconds from the request's first byte on the wire to the answer's last: the target's latency
    @property
    def wire_s(self) -> float: ...

    #: seconds spent before that inside the harness (a connection slot, the resolver)
    @property
    def waited_s(self) -> float: ...


class Connection(Protocol):
    """An open WebSocket, driven from its owner's greenlet (``transport.WebSocket``)."""

    #: Messages that arrived while ``close`` waited for the server's close
    #: frame, each with when it was read (as ``arrived_at``): the server sent
    #: them, so the driver still counts them, and times an answer among them.
    @property
    def leftover(self) -> Sequence[tuple[bytes, float | None]]: ...

    #: When the message ``recv`` last returned was read off the socket (the
    #: transport's clock), or None: a burst is handed out one message at a
    #: time, and the later ones' processing time is the harness's, not the target's.
    @property
    def arrived_at(self) -> float | None: ...

    #: The connection is over (its end was seen, or we closed or aborted it):
    #: ``close`` now only returns how it ended. The driver asks before closing,
    #: so a violation found by our own close is told from one it already saw.
    @property
    def closed(self) -> bool: ...

    def send(self, data: bytes) -> None:
        """Send one text frame; raises ``ConnectionEnded`` once the connection is over."""
        ...

    def recv(self, timeout: float | None) -> bytes | None:
        """One whole message (``BinaryFrame`` for a binary one), or None once ``timeout`` passed.

        Raises ``ConnectionEnded`` when the connection ended (the server's
        close, a lost link) and ``TargetProtocolError`` when the target broke
        RFC 6455.
        """
        ...

    def close(self, code: int = 1000, reason: str = "", wait: bool = True) -> ConnectionEnded:
        """Close from our side (``wait``: for the server's close frame) and say how it really ended."""
        ...


class Transport(Protocol):
    """Clock, pause, the token call and WebSocket connect (``transport.GeventTransport``)."""

    def now(self) -> float:
        """Monotonic seconds; every timestamp the driver records is on this clock."""
        ...

    def sleep(self, seconds: float) -> None:
        """Pause this guest only (a reconnect's backoff)."""
        ...

    def http(self, request: TokenRequest) -> HttpResult:
        """Perform the token request; raises ``ConnectRefused``/``ConnectFailed`` when no answer came."""
        ...

    def connect(self, url: str, headers: list[tuple[str, str]] | None = None,
                timeout: float | None = None, attempt: ConnectAttempt | None = None) -> Connection:
        """TCP (+TLS) and the upgrade, until the socket is open.

        Raises ``ConnectRefused``, ``ConnectFailed`` or ``UpgradeRefused``.
        A ``BaseException`` that is not an ``Exception`` (the harness
        stopping) is raised on; when it came mid-upgrade, how the half-made
        connection was left is recorded on ``attempt`` first.
        """
        ...
