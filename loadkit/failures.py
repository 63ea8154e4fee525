"""Failure texts for Locust's tables, from a bounded vocabulary.

Locust keeps one failure row per distinct text, for the whole run. A text
that carries a value the server chose (a close reason, a header value, a
parser's message with a byte count) makes a new row for every value: a
misbehaving target produced 1,914 rows in ten seconds, and a soak's table
grows without end. So the text that reaches Locust is built only from
things loadkit names (outcomes, phases, close codes, initiators, error
classes), and what the server said goes to the report's
``failure_details``, capped (``Recorder.note_detail``).

Pure: no I/O.
"""

from __future__ import annotations

from loadkit.errors import (
    ConnectFailed,
    ConnectionEnded,
    ConnectRefused,
    HttpStatusError,
    TargetProtocolError,
    UpgradeRefused,
)

#: A detail text is cut to this many characters.
DETAIL_CHARS = 200


class Failure(Exception):
    """What Locust is given for a failed request: ``str()`` is a bounded label."""


def label(error: BaseException) -> tuple[str, str]:
    """``(bounded label, detail)`` for an error; the detail is "" when there is nothing more."""
    if isinstance(error, Failure):
        return str(error), ""
    if isinstance(error, TargetProtocolError):
        return f"protocol error ({error.kind}), closed {error.code}", error.violation
    if isinstance(error, ConnectionEnded):
        return ended_label(error.code, error.initiator), error.reason
    if isinstance(error, ConnectFailed):
        return str(error), error.detail
    if isinstance(error, (ConnectRefused, UpgradeRefused, HttpStatusError)):
        return str(error), ""
    if isinstance(error, TimeoutError):
        return "timeout", str(error)
    return error.__class__.__name__, str(error)


def ended_label(code: int | None, initiator: str | None) -> str:
    """``closed 1011 by server``; a lost link says so."""
    if code is None:
        return "no close"
    if initiator == "none" or code == 1006:
        return "connection lost without a close frame (1006)"
    return f"closed {code} by {initiator}"


def detail_text(where: str, detail: str) -> str:
    """One ``failure_details`` key: where it happened, then what was said (cut)."""
    detail = " ".join(detail.split())
    if len(detail) > DETAIL_CHARS:
        detail = detail[: DETAIL_CHARS - 1] + "…"
    return f"{where}: {detail}"
