"""The probe's trace: every step of one guest's life, timestamped, secrets out.

Why a recorder apart from the driver: the same events feed three readers
(the live text on the terminal, the ``--json`` file, the diagnosis), and
each must see the same redacted facts. Events are kept raw (frame bytes,
the grant's token) and leave this module only through ``Redactor``, so no
output path can forget to redact. Secrets are replaced by labels that say
what they are (``<grant token>``) or, for a secret the probe did not issue,
by its length and a short hash: two redacted values can still be compared
("the token sent is not the one granted") without either being shown.

Pure: no I/O; the clocks are passed in.
"""

from __future__ import annotations

import hashlib
import re
import time as _time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson

#: Object keys and header names whose string values are secrets wherever they appear.
SECRET_KEY = re.compile(r"token|secret|passw|authori[sz]ation|api[-_]?key|jwt|cookie|credential|signature",
                        re.IGNORECASE)

Event = dict[str, Any]
Sink = Callable[[int, Event], None]

#: A connect step's duration is the time since the step before it.
STEP_AFTER = {"dns": "connect", "tcp": "dns", "tcp_failed": "dns", "tls": "tcp", "tls_failed": "tcp",
              "upgrade_response": "upgrade_request"}


class Redactor:
    """Replaces known secrets (by label) and values under secret-looking keys (by hash)."""

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}

    def add(self, secret: str, label: str) -> None:
        """Never show ``secret`` (nor its URL-quoted form); call it ``<label>``."""
        if secret and len(secret) >= 4:
            self._labels.setdefault(secret, label)
            self._labels.setdefault(quote(secret, safe=""), label)

    def label(self, secret: str) -> str:
        """What a secret value is shown as."""
        known = self._labels.get(secret)
        if known is not None:
            return f"<{known}>"
        digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        return f"<redacted: {len(secret)} chars, sha256 {digest}>"

    def text(self, text: str) -> str:
        """``text`` with every known secret inside it replaced by its label."""
        for secret in sorted(self._labels, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, f"<{self._labels[secret]}>")
        return text

    def value(self, value: Any, key: str | None = None) -> Any:
        """A JSON value with secrets replaced: whole strings under secret keys, known secrets anywhere."""
        if isinstance(value, dict):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, key) for v in value]
        if isinstance(value, str):
            if key is not None and value and SECRET_KEY.search(key):
                return self.label(value)
            return self.text(value)
        return value

    def headers(self, headers: list[tuple[str, str]] | list[list[str]]) -> list[list[str]]:
        return [[name, self.label(value) if SECRET_KEY.search(name) and value else self.text(value)]
                for name, value in headers]


def parse_json(data: bytes) -> tuple[bool, Any]:
    """(True, value) if ``data`` is JSON, else (False, None)."""
    try:
        return True, orjson.loads(data)
    except orjson.JSONDecodeError:
        return False, None


def body_view(data: bytes, redactor: Redactor) -> dict[str, Any]:
    """An HTTP or frame payload as shown: parsed JSON, else text, else hex (first 64 bytes)."""
    ok, obj = parse_json(data)
    if ok:
        return {"json": redactor.value(obj)}
    try:
        return {"text": redactor.text(data.decode("utf-8"))}
    except UnicodeDecodeError:
        return {"hex": data[:64].hex()}


def _view(fields: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "data" and isinstance(value, bytes):
            out["size"] = len(value)
            if fields.get("opcode") in ("ping", "pong"):
                out["payload"] = value.decode("utf-8", "replace") if value else ""
            elif fields.get("opcode") != "close":
                out.update(body_view(value, redactor))
        elif key == "body" and isinstance(value, bytes):
            out["body"] = body_view(value, redactor) if value else None
        elif key == "headers" and isinstance(value, list):
            out["headers"] = redactor.headers(value)
        else:
            out[key] = redactor.value(value, key)
    return out


class TraceRecorder:
    """Collects events; ``exported()`` is the only way out, and it redacts.

    ``classify(data) -> str`` names what a received text frame means (the
    profile's reading: ``auth_ok``, ``pong``...); ``expect(role)`` names the
    next frame the probe sends (``auth``, ``keepalive``, ``message``).
    """

    def __init__(self, clock: Callable[[], float] = _time.perf_counter,
                 wall: Callable[[], float] = _time.time,
                 classify: Callable[[bytes], str] | None = None, sink: Sink | None = None) -> None:
        self.clock = clock
        self.wall = wall
        self.classify = classify
        self.sink = sink
        self.redactor = Redactor()
        self.events: list[Event] = []
        self._t0 = clock()
        self._wall0 = wall()
        self._role: str | None = None
        self._last: dict[str, float] = {}

    def now(self) -> float:
        return self.clock()

    def expect(self, role: str) -> None:
        self._role = role

    def add(self, event: str, fields: dict[str, Any] | None = None, at: float | None = None) -> int:
        """Record ``event`` (at clock time ``at``, default now); returns its index."""
        t = (self.clock() if at is None else at) - self._t0
        record: Event = {"t": round(t, 6), "epoch": round(self._wall0 + t, 6), "event": event}
        record.update(fields or {})
        before = self._last.get(STEP_AFTER.get(event, ""))
        if before is not None and "duration_ms" not in record:
            record["duration_ms"] = round((t - before) * 1000, 3)
        self._last[event] = t
        self.events.append(record)
        index = len(self.events) - 1
        if self.sink is not None:
            self.sink(index, self.view(record))
        return index

    def transport_hook(self, event: str, fields: dict[str, Any]) -> None:
        """The transport's ``trace`` callback: frames get their role or meaning."""
        if event == "frame_sent" and fields.get("opcode") in ("text", "binary"):
            fields = dict(fields, role=self._role or "frame")
            self._role = None
        elif event == "frame_sent" and fields.get("opcode") == "pong":
            fields = dict(fields, role="automatic answer to a ping")
        elif event == "frame_received" and fields.get("opcode") in ("text", "binary") and self.classify:
            fields = dict(fields, kind=self.classify(fields["data"]))
        self.add(event, fields)

    def view(self, record: Event) -> Event:
        out = _view(record, self.redactor)
        out["at"] = _iso(record["epoch"])
        return out

    def exported(self) -> list[Event]:
        """Every event as JSON-ready data, secrets redacted."""
        return [self.view(record) for record in self.events]


def _iso(epoch: float) -> str:
    whole = int(epoch)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(whole)) + f".{int((epoch - whole) * 1000):03d}Z"
