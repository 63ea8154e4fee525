"""Ground truth: what the gateway actually did, counted from the wire.

Why this exists: a load harness reports what its clients saw, and a report is
only trustworthy if it can be checked against what the server did. So every
close is recorded from the close frames that really crossed the connection
(not from what the code intended), with who sent the first one and which
phase the session was in. A harness test can then assert "the client counted
exactly what the gateway counted".

Session ages (``session_ages``): each authenticated session's age at its end
(from ``auth_ok`` sent to the first close frame or the lost link) and whether
the guest lost it (the gateway's close, or no close at all) or ended it
(censored). That is what a Kaplan-Meier survival estimate needs, so the
harness's ``survival`` can be recomputed from the gateway's side. Ages are
counted in buckets (``age_bucket_ms``), so the record stays bounded however
long the soak, and a dict of counts sums exactly across processes.

Pure: counters and a snapshot; the server feeds it. No clock, no sockets.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from loadkit.closes import CloseFrame, Initiator, attribute_close

from .anomalies import ANOMALY_KINDS, FloodRecord

__all__ = ["AGE_BITS", "CloseRecord", "GatewayStats", "age_bucket_ms", "close_record", "merge_snapshots"]

Phase = Literal["pre_auth", "authenticated"]

FRAMES_RECEIVED = ("auth", "ping", "message", "typing", "other")
FRAMES_SENT = ("auth_ok", "pong", "ack", "message", "error", "session_expired")
ERROR_CODES = ("4011", "4029", "4400", "4001", "4003")

#: Significant bits kept of a session's age in ms: exact below 512 ms, then
#: 256 buckets per doubling (each age rounded down by less than 1/256 = 0.4 %),
#: so a day of distinct ages needs fewer than 5,000 keys per kind.
AGE_BITS = 9


def age_bucket_ms(age_s: float) -> int:
    """The bucket of an age: its milliseconds rounded down to AGE_BITS significant bits."""
    ms = max(0, int(age_s * 1000.0))
    shift = max(0, ms.bit_length() - AGE_BITS)
    return (ms >> shift) << shift


@dataclass(frozen=True)
class CloseRecord:
    """How one session ended, as the client saw it."""

    code: int
    reason: str
    initiator: Initiator
    phase: Phase


def close_record(
    sent: CloseFrame | None, rcvd: CloseFrame | None, rcvd_then_sent: bool | None, phase: Phase
) -> CloseRecord:
    """Turn websockets' ``close_sent``/``close_rcvd``/``close_rcvd_then_sent`` into a record.

    Attributed by ``loadkit.closes.attribute_close`` from the server's side,
    the same rule the harness's transport applies from the client's: no
    close frame is 1006 by nobody; the client's frame first is the client's
    close; a simultaneous close with different codes is the server's; else the
    server's frame came first. (The gateway cannot tell a lost link after its
    own unanswered close from a client that got it, so it records the
    latter: the close the client most likely saw.)
    """
    a = attribute_close("server", sent, rcvd, rcvd_then_sent)
    return CloseRecord(a.code, a.reason, a.initiator, phase)


class GatewayStats:
    """Counters behind ``GET /_gateway/stats``. Keys are strings, as in the JSON."""

    def __init__(self) -> None:
        self.tokens_issued = 0
        self.tokens_refused: Counter[str] = Counter({"429": 0, "503": 0, "400": 0})
        self.upgrades_accepted = 0
        self.upgrades_refused: Counter[str] = Counter({"503": 0, "429": 0})
        self.opened = 0
        self.authenticated = 0
        self.open = 0
        self.closed = 0
        self.closes: Counter[CloseRecord] = Counter()
        self.received: Counter[str] = Counter(dict.fromkeys(FRAMES_RECEIVED, 0))
        self.sent: Counter[str] = Counter(dict.fromkeys(FRAMES_SENT, 0))
        self.errors: Counter[str] = Counter(dict.fromkeys(ERROR_CODES, 0))
        self.drops: Counter[str] = Counter({"1011": 0, "reset": 0})
        self.faults: Counter[str] = Counter()
        self.faults_upgrade_refused: Counter[str] = Counter({"429": 0, "503": 0})
        #: authenticated sessions by age bucket (ms) at their end: lost by the guest, or censored
        self.ages_dropped: Counter[int] = Counter()
        self.ages_censored: Counter[int] = Counter()
        #: anomalous frames injected, by kind (``anomalies.py``), and what the ping floods measured
        self.anomalies: Counter[str] = Counter(dict.fromkeys(ANOMALY_KINDS, 0))
        self.ping_flood = FloodRecord()

    def session_opened(self) -> None:
        self.opened += 1
        self.open += 1

    def session_closed(self, record: CloseRecord, age_s: float | None = None) -> None:
        """One session ended; ``age_s`` is its age at the end if it was authenticated.

        From the guest's side the session was lost (a Kaplan-Meier event)
        when the gateway closed first or nobody did (1006); a close the
        guest started is its own goodbye (or its stop): censored at that age.
        """
        self.open -= 1
        self.closed += 1
        self.closes[record] += 1
        if age_s is not None and record.phase == "authenticated":
            ages = self.ages_censored if record.initiator == "client" else self.ages_dropped
            ages[age_bucket_ms(age_s)] += 1

    def frame_received(self, frame_type: object) -> None:
        self.received[frame_type if frame_type in FRAMES_RECEIVED else "other"] += 1

    def frame_sent(self, frame_type: str, error_code: int | None = None) -> None:
        self.sent[frame_type] += 1
        if error_code is not None:
            self.errors[str(error_code)] += 1

    def snapshot(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The JSON document; closes sorted most frequent first."""
        closes = [
            {"code": r.code, "reason": r.reason, "initiator": r.initiator, "phase": r.phase, "count": n}
            for r, n in sorted(self.closes.items(), key=lambda item: (-item[1], item[0].code, item[0].reason))
        ]
        f = self.faults
        return {
            "tokens": {"issued": self.tokens_issued, "refused": dict(self.tokens_refused)},
            "upgrades": {"accepted": self.upgrades_accepted, "refused": dict(self.upgrades_refused)},
            "sessions": {"opened": self.opened, "authenticated": self.authenticated,
                         "open": self.open, "closed": self.closed},
            "closes": closes,
            "frames_received": dict(self.received),
            "frames_sent": dict(self.sent),
            "errors_sent": dict(self.errors),
            "faults": {
                "drop": dict(self.drops),
                "silent_close_after_auth": f["silent_close_after_auth"],
                "upgrade_refused": dict(self.faults_upgrade_refused),
                "stalled_handshakes": f["stalled_handshakes"],
                "restarts": f["restarts"],
                "slow_handshakes": f["slow_handshakes"],
                "auth_delayed": f["auth_delayed"],
                "auth_degraded": f["auth_degraded"],
                "acks_delayed": f["acks_delayed"],
                "acks_out_of_order": f["acks_out_of_order"],
                "agent_replies_delayed": f["agent_replies_delayed"],
                "sessions_expired": f["sessions_expired"],
                "anomalies": dict(self.anomalies),
                "ping_flood": self.ping_flood.as_dict(),
            },
            "session_ages": {"dropped_ms": _by_age(self.ages_dropped), "censored_ms": _by_age(self.ages_censored)},
            "settings": settings,
        }


def _by_age(ages: Counter[int]) -> dict[str, int]:
    return {str(ms): n for ms, n in sorted(ages.items())}


def merge_snapshots(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One document from the snapshots of several gateway processes, exactly.

    Every number is summed, key by key, at any depth (a key one process
    lacks counts as 0), but for keys named ``*_min`` and ``*_max``, which
    merge as the least and the greatest value (``None`` meaning none yet);
    ``closes`` rows are summed by (code, reason, initiator, phase) and sorted as ``GatewayStats.snapshot`` sorts them;
    ``session_ages`` buckets are summed by age and kept in age order;
    text and ``settings`` are taken from the first document (the processes of
    one gateway share their settings). Works for ``/_gateway/stats`` and
    ``/_gateway/webmessaging`` alike.
    """
    merged: dict[str, Any] = {}
    closes: Counter[tuple[int, str, str, str]] = Counter()
    for doc in docs:
        for row in doc.get("closes", ()):
            closes[(row["code"], row["reason"], row["initiator"], row["phase"])] += row["count"]
        _add(merged, {k: v for k, v in doc.items() if k not in ("closes", "settings")})
    if any("closes" in doc for doc in docs):
        merged["closes"] = [
            {"code": code, "reason": reason, "initiator": initiator, "phase": phase, "count": n}
            for (code, reason, initiator, phase), n in sorted(closes.items(), key=lambda kv: (-kv[1], kv[0]))]
    for kind, ages in merged.get("session_ages", {}).items():  # summed in arrival order: sort by age again
        merged["session_ages"][kind] = dict(sorted(ages.items(), key=lambda kv: int(kv[0])))
    if docs and "settings" in docs[0]:
        merged["settings"] = docs[0]["settings"]
    order = list(docs[0]) if docs else []
    return {key: merged[key] for key in sorted(merged, key=lambda k: order.index(k) if k in order else len(order))}


def _add(into: dict[str, Any], doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        if key.endswith(("_min", "_max")) and (value is None or isinstance(value, (int, float))):
            have = into.get(key)
            pick = min if key.endswith("_min") else max
            into[key] = value if have is None else have if value is None else pick(have, value)
        elif isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value
        else:
            into.setdefault(key, value)
