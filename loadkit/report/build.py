"""Build the report (docs/report-schema.md) from merged metrics, and decide its verdict. Pure.

The verdict is the product: a CI job sees one exit code. So it is decided
here, in one place, from the report alone (a report file read back gives
the same verdict), in this order, the worst thing that is true first:

1. ``error``: the accounting does not add up, or the harness itself failed;
   no other figure can be trusted.
2. ``unreachable``: sessions were tried and not one authenticated; nothing
   about the target was measured (the reason names the dominant failure).
3. ``invalid``: the run did not deliver the load it claims: the load
   generator was saturated, a worker was lost or left early (see the
   ``validity`` checks).
4. ``fail``: a threshold was measured and breached.
5. ``inconclusive``: a threshold had nothing to measure, the run was stopped
   before its planned run time, or nothing was measured at all.
6. ``pass``.
"""

from __future__ import annotations

from typing import Any

from loadkit import __version__
from loadkit.lifecycle import Outcome
from loadkit.metrics import survival as km
from loadkit.metrics.recorder import HARNESS_SERIES, Recorder
from loadkit.report.catalogue import LATENCY_PHASES
from loadkit.report.harness import harness_section, lag_check
from loadkit.report.model import (
    BadFrames,
    Check,
    CloseRow,
    Invariant,
    Messages,
    Reconnect,
    Report,
    Sessions,
    Validity,
)
from loadkit.settings import mark_label

__all__ = ["build_model", "build_report", "dominant_failure", "harness_section", "unreachable", "verdict_of",
           "verdict_reason"]

#: Outcomes that mean "no connection could be made at all".
UNREACHABLE_OUTCOMES = frozenset({Outcome.CONNECT_REFUSED.value, Outcome.CONNECT_FAILED.value})
#: Outcomes that are not a failure of the target.
_NOT_FAILURES = frozenset({Outcome.CLOSED_NORMALLY.value, Outcome.STOPPED_BY_HARNESS.value})


def build_model(total: Recorder, *, open_sessions: int, run: dict[str, Any],
                drift: dict[str, Any] | None = None, saturation: dict[str, Any] | None = None,
                gateway: dict[str, Any] | None = None, checks: list[Check] | None = None,
                lag_limit_ms: float | None = None) -> Report:
    """The typed report of a run (no thresholds or verdict yet: see :func:`finish`)."""
    outcomes = total.outcomes()
    ended = sum(outcomes.values())
    by_phase: dict[str, dict[str, int]] = {}
    for (outcome, phase), n in sorted(total.ended.items()):
        by_phase.setdefault(phase, {})[outcome] = n
    failures: dict[str, dict[str, int]] = {}
    for (outcome, detail), n in sorted(total.failures.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])):
        failures.setdefault(outcome, {})[detail] = n
    drops = total.drops()
    hours = total.session_seconds / 3600.0
    invariant = Invariant(total.started == ended + open_sessions, total.started, ended, open_sessions)
    table = km.steps(total.dropped_at, total.survived)
    survival = {mark_label(m): km.estimate_at(m, total.dropped_at, total.survived, table).as_dict()
                for m in total.marks}
    phases = (*LATENCY_PHASES, *(k for k in total.latency if k not in LATENCY_PHASES and k not in HARNESS_SERIES))
    report = Report(
        loadkit_version=__version__,
        run=run,
        sessions=Sessions(total.started, total.authenticated, open_sessions, outcomes, by_phase, failures,
                          dict(sorted((k, n) for k, n in total.expected_outcomes.items() if n))),
        invariant=invariant,
        close_codes=[CloseRow(p, c, r, i, n) for (p, c, r, i), n in
                     sorted(total.close_codes.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))],
        drops=drops,
        drop_rate=(drops / total.at_risk_authenticated()) if total.at_risk_authenticated() else None,
        session_hours=round(hours, 6),
        drops_per_session_hour=(drops / hours) if hours > 0 else None,
        expected_drops=expected_drops_section(total),
        latency_ms={p: _latency(total, p) for p in phases},
        reconnect=Reconnect(total.reconnect_attempts, total.reconnect_successes,
                            (total.reconnect_successes / total.reconnect_attempts)
                            if total.reconnect_attempts else None,
                            total.recover.summary_ms(), total.not_resumed),
        survival=survival,
        survival_curve=km.curve(total.dropped_at, total.survived),
        keepalive={"pings_sent": total.pings_sent,
                   "pongs": total.latency["ping"].count + total.untimed.get("ping", 0),
                   "missed_pongs": total.missed_pongs, "refused": total.pings_refused,
                   "in_flight": total.pings_in_flight,
                   "timeouts": outcomes.get(Outcome.KEEPALIVE_TIMEOUT.value, 0),
                   "silence_ms": total.silence.summary_ms((50, 95, 99))},
        errors=dict(sorted(total.errors.items())),
        bad_frames=bad_frames(total),
        validity=Validity(),
        messages=Messages(total.messages_sent, total.messages_answered, total.agent_messages,
                          total.messages_unanswered, total.messages_refused, total.messages_in_flight),
        harness=harness_section(total, lag_limit_ms),
        failure_details=dict(sorted(total.failure_details.items(), key=lambda kv: (-kv[1], kv[0]))),
        drift=drift, saturation=saturation, gateway=gateway,
    )
    extra = list(checks or [])
    lag = lag_check(report.harness or {})
    if lag is not None:
        extra.append(Check(lag["name"], lag["ok"], lag["detail"], lag["fails_as"]))
    report.validity = validity(invariant, run, saturation, extra)
    return report


def expected_drops_section(total: Recorder) -> dict[str, Any]:
    """The drops the mix asked for (``no_keepalive``, ``fast_messages``), by behaviour.

    Kept apart so that a gateway enforcing its idle timeout or rate limit is
    not charged with drops: the close-code table still shows each close.
    """
    names = sorted(set(total.expected_authenticated) | set(total.expected_drops))
    return {"count": sum(total.expected_drops.values()),
            "by_behaviour": {n: {"authenticated": total.expected_authenticated[n],
                                 "dropped": total.expected_drops[n]} for n in names}}


def _latency(total: Recorder, phase: str) -> dict[str, Any]:
    """A phase's summary, with each percentile's ~95 % interval (``ci``) for ``loadkit compare``."""
    hist = total.latency.get(phase)
    if not hist:
        return hist.summary_ms() if hist is not None else {"count": 0}
    return {**hist.summary_ms(), "ci": hist.intervals_ms()}


def bad_frames(total: Recorder) -> BadFrames:
    """Frames the target should not have sent: how many, of which kind, in which phase."""
    by_kind: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    for (kind, phase), n in total.bad_frames.items():
        by_kind[kind] = by_kind.get(kind, 0) + n
        by_phase[phase] = by_phase.get(phase, 0) + n
    return BadFrames(sum(by_kind.values()), dict(sorted(by_kind.items())), dict(sorted(by_phase.items())),
                     total.bad_sessions)


def build_report(total: Recorder, **kw: Any) -> dict[str, Any]:
    """:func:`build_model`, serialised (the dict every reader takes)."""
    return build_model(total, **kw).to_dict()


def validity(invariant: Invariant, run: dict[str, Any], saturation: dict[str, Any] | None,
             extra: list[Check]) -> Validity:
    """Did the run run as asked? One check per way it may not have (CONTRACTS: validity)."""
    v = Validity()
    v.add("accounting", invariant.ok,
          f"sessions started {invariant.started} = ended {invariant.ended} + open {invariant.open}"
          if invariant.ok else
          f"sessions started {invariant.started} != ended {invariant.ended} + open {invariant.open}", "error")
    if saturation is not None:
        v.add("saturation", bool(saturation.get("valid", True)),
              f"load generator CPU above {saturation.get('cpu_limit_percent')} % in "
              f"{_pct(saturation.get('share_saturated'))} of {saturation.get('samples')} samples "
              f"(limit {_pct(saturation.get('limit'))})")
    workers = run.get("workers") or {}
    lost, left = list(workers.get("lost") or []), list(workers.get("left") or [])
    if workers.get("count") or lost or left:
        gone = [f"{w} lost" for w in lost] + [f"{e.get('worker')} {e.get('why')}" for e in left
                                              if isinstance(e, dict) and e.get("worker") not in lost]
        v.add("workers", not gone, "every worker stayed to the end" if not gone else
              f"{len(gone)} of {workers.get('count')} worker(s) did not: " + "; ".join(gone))
    aborted = run.get("aborted")
    if isinstance(aborted, dict):
        by_breach = aborted.get("by") == "breach"
        v.add("interrupted", False, f"stopped after {aborted.get('after_s')} s of the planned "
              f"{aborted.get('planned_s')} s: {aborted.get('why')}", "fail" if by_breach else "inconclusive")
    elif aborted:  # an older report: a breach message
        v.add("interrupted", False, f"stopped early: {aborted}", "fail")
    elif "aborted" in run:
        v.add("interrupted", True, "ran for its planned time" if run.get("planned_s") else
              "no planned run time (stopped by a person or by -t)", "inconclusive")
    v.checks.extend(extra)
    return v


def _pct(v: Any) -> str:
    return f"{v * 100:.0f} %" if isinstance(v, (int, float)) else "?"


# -- the verdict -----------------------------------------------------------------------


def _checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    checks = (report.get("validity") or {}).get("checks") or []
    return [c for c in checks if isinstance(c, dict)]


def _failed(report: dict[str, Any], fails_as: str) -> list[dict[str, Any]]:
    return [c for c in _checks(report) if not c.get("ok") and c.get("fails_as", "invalid") == fails_as]


def tried(report: dict[str, Any]) -> int:
    """Sessions that ended in a failure of the target (not normally, not stopped by us)."""
    return sum(n for o, n in report["sessions"]["outcomes"].items() if o not in _NOT_FAILURES)


def unreachable(report: dict[str, Any]) -> bool:
    """True when sessions were tried and not one authenticated: nothing was measured."""
    return report["sessions"]["authenticated"] == 0 and tried(report) > 0


def dominant_failure(report: dict[str, Any]) -> str:
    """The commonest way sessions failed, with its count: ``token_refused: HTTP 500 ×36``."""
    sessions = report["sessions"]
    best: tuple[int, str] = (0, "")
    for outcome, details in (sessions.get("failures") or {}).items():
        for detail, n in details.items():
            if n > best[0]:
                best = (n, f"{outcome}: {detail} ×{n}" if detail else f"{outcome} ×{n}")
    if best[0]:
        return best[1]
    counts = [(n, o) for o, n in sessions["outcomes"].items() if o not in _NOT_FAILURES]
    if not counts:
        return "none"
    n, o = max(counts)
    return f"{o} ×{n}"


def verdict_of(report: dict[str, Any]) -> str:
    """pass, fail, inconclusive, invalid, error or unreachable (see the module docstring)."""
    outcomes = report["sessions"]["outcomes"]
    if not report["invariant"]["ok"] or outcomes.get(Outcome.HARNESS_ERROR.value) or _failed(report, "error"):
        return "error"
    if unreachable(report):
        return "unreachable"
    if _failed(report, "invalid") or not report.get("saturation", {}).get("valid", True) \
            or report.get("run", {}).get("workers", {}).get("lost"):
        return "invalid"
    rows = [t for t in report.get("thresholds") or [] if isinstance(t, dict)]
    if any(t.get("passed") is False for t in rows) or _failed(report, "fail"):
        return "fail"
    if _failed(report, "inconclusive") or any(t.get("passed") is None for t in rows):
        return "inconclusive"
    if report["sessions"]["authenticated"] == 0:
        return "inconclusive"  # nothing failed, nothing measured either (e.g. no session started)
    return "pass"


def verdict_reason(report: dict[str, Any], verdict: str) -> str:
    """One line: why the verdict is what it is."""
    if verdict == "error":
        inv = report["invariant"]
        if not inv["ok"]:
            return f"accounting violated: started {inv['started']} != ended {inv['ended']} + open {inv['open']}"
        return "the harness failed: " + (", ".join(c["detail"] for c in _failed(report, "error"))
                                         or f"{report['sessions']['outcomes'].get('harness_error', 0)} "
                                            "session(s) ended in harness_error")
    if verdict == "unreachable":
        return (f"nothing authenticated: {dominant_failure(report)} "
                f"({tried(report)} session(s) tried, 0 authenticated)")
    if verdict == "invalid":
        return "; ".join(f"{c['name']}: {c['detail']}" for c in _failed(report, "invalid")) \
            or "the load generator could not deliver the load"
    rows = [t for t in report.get("thresholds") or [] if isinstance(t, dict)]
    if verdict == "fail":
        failed = [t["expr"] for t in rows if t.get("passed") is False]
        stops = [c["detail"] for c in _failed(report, "fail")]
        return "; ".join([*(f"breached: {e}" for e in failed), *stops])
    if verdict == "inconclusive":
        parts = [f"{c['name']}: {c['detail']}" for c in _failed(report, "inconclusive")]
        parts += [f"not measured: {t['expr']}" for t in rows if t.get("passed") is None]
        return "; ".join(parts) or "no session authenticated: nothing was measured"
    return f"every check held ({len(rows)} threshold(s))"


def connect_failures(report: dict[str, Any]) -> dict[str, int]:
    return {o: n for o, n in report["sessions"]["outcomes"].items() if o in UNREACHABLE_OUTCOMES}
