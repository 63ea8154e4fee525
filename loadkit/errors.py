"""The one exception tree of loadkit.

- ``LoadkitError``                 every error loadkit raises on purpose
    - ``ConfigError``              bad input (option, scenario, setting): exit 2, one line for the user
        - ``ScenarioError``        a scenario file's problems, every one (``Problem``: file, key, value found,
                                   what was expected), one line each
        - ``ProfileOptionError``   a profile's options (``loadkit.protocol.base``), as problem triples
        - ``ThresholdError``       a threshold expression (``loadkit.report.thresholds``)
        - ``SettingsError``        an embedded-gateway setting (``loadkit.gateway.settings``)
        - ``LimitError``           a ``loadkit compare`` limit (``loadkit.report.compare``)
        - ``UsageError``           a bad command line of ``loadkit gateway`` / ``loadkit compare``
    - ``LocalProtocolError``       loadkit did something illegal (a harness bug)
    - ``TargetError``              the target did something, seen by the transport
        - ``ConnectRefused``       TCP connection refused
        - ``ConnectFailed``        timeout, DNS, TLS, reset before the upgrade completed
        - ``UpgradeRefused``       the upgrade got an HTTP status instead of 101
        - ``HttpStatusError``      a plain HTTP call (the token) got a non-2xx status
        - ``ConnectionEnded``      an open WebSocket ended: close code, reason, initiator

Subclasses that live beside the code that raises them still derive from
this tree (and from ``ValueError`` where callers catch that), so each edge
maps one class to one exit: ``ConfigError`` → one line on stderr, exit 2,
no traceback (the Locust plugin, ``loadkit`` commands, the gateway's
command line).

As in h11, "local" errors are ours and "target" errors are the peer's: a
harness must never blame the gateway for its own bug, nor the reverse.
Transport exceptions carry structured fields and build their text in
``__str__``, so the same object feeds metrics (fields) and Locust's failure
table (text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class LoadkitError(Exception):
    """Base class of every error loadkit raises on purpose."""


class ConfigError(LoadkitError):
    """A bad option, scenario file or setting; its text is one line for the user."""


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


#: Stands for "no value was given" in a problem.
MISSING: Any = _Missing()


def show_value(value: Any) -> str:
    """A value as a user wrote it (TOML-ish, JSON quoting), for one-line errors."""
    if isinstance(value, dict) and set(value) <= {"env", "default"} and "env" in value:
        inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
        return "{" + inner + "}"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a scenario file, as data: where, what was found, and what would do."""

    file: str
    key: str
    value: Any
    message: str  # "expected …", "unknown key; …" or "missing; expected …"

    def __str__(self) -> str:
        if self.value is MISSING:
            return f"{self.file}: {self.key}: {self.message}"
        return f"{self.file}: {self.key} = {show_value(self.value)}: {self.message}"


class ScenarioError(ConfigError):
    """A scenario file that cannot be used: every problem, one per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class UsageError(ConfigError):
    """A bad command line of a ``loadkit`` command (what argparse's ``error`` says); exit 2."""


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
