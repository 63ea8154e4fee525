"""The one exception tree of loadkit.

- ``LoadkitError``                 every error loadkit raises on purpose
    - ``ConfigError``              bad option, scenario or setting: one line for the user
    - ``LocalProtocolError``       loadkit did something illegal (a harness bug)
    - ``TargetError``              the target did something, seen by the transport
        - ``ConnectRefused``       TCP connection refused
        - ``ConnectFailed``        timeout, DNS, TLS, reset before the upgrade completed
        - ``UpgradeRefused``       the upgrade got an HTTP status instead of 101
        - ``HttpStatusError``      a plain HTTP call (the token) got a non-2xx status
        - ``ConnectionEnded``      an open WebSocket ended: close code, reason, initiator

As in h11, "local" errors are ours and "target" errors are the peer's: a
harness must never blame the gateway for its own bug, nor the reverse.
Transport exceptions carry structured fields and build their text in
``__str__``, so the same object feeds metrics (fields) and Locust's failure
table (text).
"""

from __future__ import annotations


class LoadkitError(Exception):
    """Base class of every error loadkit raises on purpose."""


class ConfigError(LoadkitError):
    """A bad option, scenario file or setting; its text is one line for the user."""


class LocalProtocolError(LoadkitError):
    """loadkit itself broke a rule (an illegal lifecycle transition): a bug."""


class TargetError(LoadkitError):
    """Something the target did, as seen on the wire."""


class ConnectRefused(TargetError):
    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where

    def __str__(self) -> str:
        return f"connection refused ({self.where})"


class ConnectFailed(TargetError):
    """``reason`` is from a bounded vocabulary (it names rows of Locust's failure
    table); ``detail`` holds what the target said, for the report only."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"connect failed: {self.reason}"


class UpgradeRefused(TargetError):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status

    def __str__(self) -> str:
        return f"upgrade refused: HTTP {self.status}"


class HttpStatusError(TargetError):
    def __init__(self, status: int, body: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.body = body

    def __str__(self) -> str:
        return f"HTTP {self.status}"


class ConnectionEnded(TargetError):
    """An open WebSocket connection ended.

    ``code`` is the close code of the first close frame (1006 when there was
    none), ``initiator`` is ``server``, ``client`` or ``none``.
    """

    def __init__(self, code: int, reason: str, initiator: str) -> None:
        super().__init__(code, reason, initiator)
        self.code = code
        self.reason = reason
        self.initiator = initiator

    def __str__(self) -> str:
        if self.initiator == "none":
            return "connection lost without a close frame (1006)"
        text = f"closed {self.code} by {self.initiator}"
        return f"{text}: {self.reason}" if self.reason else f"{text} (no reason)"


class TargetProtocolError(ConnectionEnded):
    """The target broke RFC 6455 (bad framing, invalid UTF-8, oversized frame): we failed the connection.

    ``code`` and ``reason`` are those of the close frame that was really on the
    wire (ours; if our own close was already out, that one, e.g. ``1000``
    with no reason); ``kind`` names the violation (``bad_framing``,
    ``invalid_utf8``, ``too_big``) and ``violation`` says what it was.
    """

    def __init__(self, code: int, reason: str, initiator: str, kind: str = "bad_framing",
                 violation: str = "") -> None:
        super().__init__(code, reason, initiator)
        self.kind = kind
        self.violation = violation or reason

    def __str__(self) -> str:
        return f"protocol error ({self.kind}), closed {self.code}: {self.violation}"
