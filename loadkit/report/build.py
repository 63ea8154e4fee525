"""Build the report dict (see docs/report-schema.md) from merged metrics. Pure."""

from __future__ import annotations

from typing import Any

from loadkit import __version__
from loadkit.lifecycle import Outcome
from loadkit.metrics.recorder import HARNESS_SERIES, LATENCY_PHASES, Recorder
from loadkit.report.harness import harness_section, lag_check
from loadkit.settings import mark_label

#: Outcomes that mean "no connection could be made at all".
UNREACHABLE_OUTCOMES = frozenset({Outcome.CONNECT_REFUSED.value, Outcome.CONNECT_FAILED.value})


def build_report(total: Recorder, *, open_sessions: int, run: dict[str, Any],
                 drift: dict[str, Any] | None = None, saturation: dict[str, Any] | None = None,
                 gateway: dict[str, Any] | None = None, lag_limit_ms: float | None = None) -> dict[str, Any]:
    outcomes = total.outcomes()
    ended = sum(outcomes.values())
    by_phase: dict[str, dict[str, int]] = {}
    for (outcome, phase), n in sorted(total.ended.items()):
        by_phase.setdefault(phase, {})[outcome] = n
    drops = total.drops()
    hours = total.session_seconds / 3600.0
    report: dict[str, Any] = {
        "loadkit_version": __version__,
        "run": run,
        "sessions": {
            "started": total.started,
            "authenticated": total.authenticated,
            "open": open_sessions,
            "outcomes": outcomes,
            "by_phase": by_phase,
        },
        "invariant": {
            "ok": total.started == ended + open_sessions,
            "started": total.started,
            "ended": ended,
            "open": open_sessions,
        },
        "close_codes": [
            {"phase": p, "code": c, "reason": r, "initiator": i, "count": n}
            for (p, c, r, i), n in sorted(total.close_codes.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))
        ],
        "drops": drops,
        "drop_rate": (drops / total.authenticated) if total.authenticated else None,
        "session_hours": round(hours, 6),
        "drops_per_session_hour": (drops / hours) if hours > 0 else None,
        "latency_ms": {
            phase: total.latency[phase].summary_ms() if phase in total.latency else {"count": 0}
            for phase in (*LATENCY_PHASES, *(k for k in total.latency
                                              if k not in LATENCY_PHASES and k not in HARNESS_SERIES))
        },
        "harness": harness_section(total, lag_limit_ms),
        "reconnect": {
            "attempts": total.reconnect_attempts,
            "successes": total.reconnect_successes,
            "success_rate": (total.reconnect_successes / total.reconnect_attempts)
            if total.reconnect_attempts else None,
            "recover_ms": total.recover.summary_ms(),
            "not_resumed": total.not_resumed,
        },
        "survival": {
            mark_label(m): _survival(total, m) for m in total.marks
        },
        "keepalive": {"missed_pongs": total.missed_pongs,
                      "timeouts": outcomes.get(Outcome.KEEPALIVE_TIMEOUT.value, 0),
                      "silence_ms": total.silence.summary_ms((50, 95, 99))},
        "errors": dict(sorted(total.errors.items())),
        "bad_frames": bad_frames(total),
        "messages": {"sent": total.messages_sent, "answered": total.messages_answered,
                     "agent_messages": total.agent_messages},
    }
    if drift is not None:
        report["drift"] = drift
    if saturation is not None:
        report["saturation"] = saturation
    if gateway is not None:
        report["gateway"] = gateway
    lag = lag_check(report["harness"])
    if lag is not None:
        report["validity"] = {"checks": [lag]}
    return report


def bad_frames(total: Recorder) -> dict[str, Any]:
    """Frames the target should not have sent: how many, of which kind, in which phase."""
    by_kind: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    for (kind, phase), n in total.bad_frames.items():
        by_kind[kind] = by_kind.get(kind, 0) + n
        by_phase[phase] = by_phase.get(phase, 0) + n
    return {"count": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items())),
            "by_phase": dict(sorted(by_phase.items())), "sessions": total.bad_sessions}


def _survival(total: Recorder, mark: int) -> dict[str, Any]:
    reached = total.survival_reached[mark]
    eligible = reached + total.survival_died[mark]
    return {"reached": reached, "eligible": eligible, "rate": (reached / eligible) if eligible else None}


def unreachable(report: dict[str, Any]) -> bool:
    """True when sessions were tried and not one got a connection."""
    outcomes = report["sessions"]["outcomes"]
    tried = sum(n for o, n in outcomes.items() if o != Outcome.STOPPED_BY_HARNESS.value)
    failed = sum(n for o, n in outcomes.items() if o in UNREACHABLE_OUTCOMES)
    return tried > 0 and failed == tried and report["sessions"]["authenticated"] == 0


def verdict_of(report: dict[str, Any]) -> str:
    """pass, fail, invalid, error or unreachable: the worst thing that is true, first.

    A broken count outranks everything (no other figure can be trusted),
    then a target that was never reached, then a load generator that could
    not deliver the load (saturated, or a worker died), then the thresholds.
    """
    outcomes = report["sessions"]["outcomes"]
    if not report["invariant"]["ok"] or outcomes.get("harness_error"):
        return "error"
    if unreachable(report):
        return "unreachable"
    if not report.get("saturation", {}).get("valid", True):
        return "invalid"
    if report.get("run", {}).get("workers", {}).get("lost"):
        return "invalid"
    checks = (report.get("validity") or {}).get("checks") or []
    if any(not c.get("ok", True) and c.get("fails_as", "invalid") == "invalid" for c in checks):
        return "invalid"
    if any(not t["passed"] for t in report.get("thresholds", [])):
        return "fail"
    return "pass"


def connect_failures(report: dict[str, Any]) -> dict[str, int]:
    return {o: n for o, n in report["sessions"]["outcomes"].items() if o in UNREACHABLE_OUTCOMES}


__all__ = ["build_report", "unreachable", "verdict_of"]
