"""What a connection did, step by step, for ``loadkit probe``: off (and free) under load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.exceptions import ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response

#: ``trace(event, fields)``: an optional observer of each step of a connection
#: (``loadkit probe``). Events: ``dns``, ``tcp``, ``tcp_failed``, ``tls``,
#: ``tls_failed``, ``upgrade_request``, ``upgrade_response``, ``frame_sent``,
#: ``frame_received``, ``eof_sent``, ``eof_received``; fields are plain data.
Trace = Callable[[str, dict[str, Any]], None]


class FrameLog:
    """websockets' own hook for watching a connection (its ``logger``), as trace events.

    websockets logs every frame it parses or queues (``"< %s"`` / ``"> %s"``
    with the ``Frame``), pongs and close echoes included, so a tracer sees
    exactly what crossed the wire without a second parser.
    """

    def __init__(self, trace: Trace) -> None:
        self._trace = trace

    def isEnabledFor(self, level: int) -> bool:  # logging's name
        return True

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], Frame):
            self._trace("frame_sent" if msg.startswith(">") else "frame_received", frame_fields(args[0]))
        elif msg in ("< EOF", "> EOF"):
            self._trace("eof_received" if msg.startswith("<") else "eof_sent", {})

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        pass

    warning = error = exception = info


def frame_fields(frame: Frame) -> dict[str, Any]:
    fields: dict[str, Any] = {"opcode": frame.opcode.name.lower(), "data": bytes(frame.data), "fin": frame.fin}
    if frame.opcode is Opcode.CLOSE:
        try:
            close = Close.parse(frame.data)
            fields["code"], fields["reason"] = close.code, close.reason
        except (ProtocolError, ValueError):  # a malformed close frame: websockets fails the connection
            fields["code"], fields["reason"] = None, ""
    return fields


def trace_responses(trace: Trace, events: list[Any]) -> None:
    for event in events:
        if isinstance(event, Response):
            trace("upgrade_response", {"status": event.status_code, "reason": event.reason_phrase,
                                       "headers": list(event.headers.raw_items()), "body": bytes(event.body or b"")})


def tls_fields(sock: Any) -> dict[str, Any]:
    cipher = sock.cipher()
    cert = sock.getpeercert() or {}
    subject = ", ".join("=".join(part) for rdn in cert.get("subject", ()) for part in rdn)
    issuer = ", ".join("=".join(part) for rdn in cert.get("issuer", ()) for part in rdn)
    return {"version": sock.version(), "cipher": cipher[0] if cipher else None, "subject": subject,
            "issuer": issuer, "not_after": cert.get("notAfter")}

