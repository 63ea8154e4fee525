"""The report as a typed model: built once, serialised once (docs/report-schema.md).

Why typed: the report is the contract between the harness and everything
that reads it (thresholds, compare, the summary, HTML, JUnit, CI scripts).
Building it as dataclasses means a field is spelt once, has one type, and
the JSON is whatever :meth:`Report.to_dict` makes of it; readers still take
the dict, because they also read reports written by older versions.

Sections that other parts of the harness fill (``bad_frames``, ``messages``,
``harness``) are typed here too, so adding a figure is adding a field.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

__all__ = ["BadFrames", "Check", "CloseRow", "Invariant", "Messages", "Reconnect", "Report",
           "Sessions", "ThresholdRow", "Validity"]


@dataclass
class Sessions:
    started: int
    authenticated: int
    open: int
    outcomes: dict[str, int]
    by_phase: dict[str, dict[str, int]]
    #: outcome -> {detail: sessions}, for sessions that never authenticated ("HTTP 500")
    failures: dict[str, dict[str, int]] = field(default_factory=dict)
    #: outcome -> sessions that ended as their guest's --guest-mix behaviour meant them to
    expected: dict[str, int] = field(default_factory=dict)


@dataclass
class Invariant:
    ok: bool
    started: int
    ended: int
    open: int


@dataclass
class CloseRow:
    phase: str
    code: int
    reason: str
    initiator: str
    count: int


@dataclass
class Reconnect:
    attempts: int
    successes: int
    success_rate: float | None
    recover_ms: dict[str, Any]
    not_resumed: int


@dataclass
class BadFrames:
    """Frames the target should not have sent (kinds: loadkit.protocol.base.BAD_FRAME_KINDS)."""

    count: int
    by_kind: dict[str, int]
    by_phase: dict[str, int] = field(default_factory=dict)
    #: sessions that received at least one
    sessions: int = 0


@dataclass
class Messages:
    sent: int = 0
    answered: int = 0
    agent_messages: int = 0
    #: messages whose answer never came in time; None until the harness counts them
    unanswered: int | None = None
    #: messages the target refused (rate-limited)
    refused: int = 0
    #: messages still awaiting their answer when their session ended
    in_flight: int = 0


@dataclass
class Check:
    """One validity check. ``fails_as`` is the verdict a failure leads to."""

    name: str
    ok: bool
    detail: str
    fails_as: str = "invalid"


@dataclass
class Validity:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str, fails_as: str = "invalid") -> None:
        self.checks.append(Check(name, ok, detail, fails_as))


class ThresholdRow(TypedDict):
    """One ``thresholds[]`` row, as loadkit.report.thresholds evaluates it.

    A TypedDict, not a dataclass: rows are made by the threshold evaluator on
    every live report and read back as plain JSON by every reader.
    """

    expr: str
    metric: str
    op: str
    limit: float
    #: the measured value; None when not measured
    value: float | None
    #: None: not measured (final report) or not decided yet (live report)
    passed: bool | None
    #: pass, fail, not_measured or vacuous
    status: str
    note: NotRequired[str]
    #: live reports only (--abort-on-breach): the result can no longer change
    settled: NotRequired[bool]


@dataclass
class Report:
    loadkit_version: str
    run: dict[str, Any]
    sessions: Sessions
    invariant: Invariant
    close_codes: list[CloseRow]
    drops: int
    drop_rate: float | None
    session_hours: float
    drops_per_session_hour: float | None
    #: drops of guests whose behaviour provokes them (not in drops): {"count", "by_behaviour"}
    expected_drops: dict[str, Any]
    latency_ms: dict[str, dict[str, Any]]
    reconnect: Reconnect
    survival: dict[str, dict[str, Any]]
    survival_curve: list[list[float]]
    keepalive: dict[str, Any]
    errors: dict[str, int]
    bad_frames: BadFrames
    validity: Validity
    messages: Messages | None = None
    harness: dict[str, Any] | None = None
    #: what the target said when things failed, "where: what" -> times (capped; Locust's table has labels only)
    failure_details: dict[str, int] | None = None
    drift: dict[str, Any] | None = None
    saturation: dict[str, Any] | None = None
    gateway: dict[str, Any] | None = None
    thresholds: list[ThresholdRow] | None = None
    verdict: str | None = None
    #: one line naming why the verdict is what it is (the dominant failure, the missing gate)
    verdict_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: optional sections that are None are left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                out[f.name] = dataclasses.asdict(value)
            elif f.name == "close_codes":
                out[f.name] = [dataclasses.asdict(v) for v in value]
            else:
                out[f.name] = value
        return out
