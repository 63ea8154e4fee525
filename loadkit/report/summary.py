"""The end-of-run summary on the terminal, from a report dict. Pure text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadkit.protocol.codes import CLOSE_CODE_NAMES


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.1f}"
    return str(v)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-" * len(line)]
    for r in cells:
        out.append("  ".join(c.rjust(w) if c[:1].isdigit() or c == "-" else c.ljust(w)
                             for c, w in zip(r, widths, strict=True)))
    return out


def render_summary(report: dict[str, Any]) -> str:
    s = report["sessions"]
    lines = ["", "=== loadkit summary " + "=" * 50]
    run = report.get("run", {})
    if run.get("host"):
        lines.append(f"target {run['host']}  profile {run.get('profile', '?')}  "
                     f"duration {_fmt(run.get('duration_s'))} s")
    inv = report["invariant"]
    lines.append(
        f"sessions: started {s['started']}, authenticated {s['authenticated']}, "
        f"ended {inv['ended']}, still open {s['open']}  "
        f"[accounting {'ok' if inv['ok'] else 'VIOLATED'}: {inv['started']} = {inv['ended']} + {inv['open']}]"
    )
    workers = run.get("workers") or {}
    if workers.get("lost"):
        lines.append(f"workers: {len(workers['lost'])} of {workers.get('count')} LOST mid-run "
                     f"({', '.join(workers['lost'])}); their open sessions count as lost_with_worker")
    lines.append(
        f"drops: {report['drops']}  drop rate {_pct(report['drop_rate'])}  "
        f"drops per session-hour {_fmt(report['drops_per_session_hour'])}  "
        f"(session-hours {report['session_hours']:.3f})"
    )
    expected = report.get("expected_drops") or {}
    if expected.get("count"):
        each = ", ".join(f"{name} {row['dropped']}" for name, row in expected["by_behaviour"].items()
                         if row["dropped"])
        lines.append(f"expected drops (guests meant to be dropped, not in drops): {expected['count']} ({each})")
    lines.append("")
    lines += _table(["outcome", "phase", "count"],
                    [[o, p, n] for p, outs in sorted(s["by_phase"].items()) for o, n in sorted(outs.items())])
    if report["close_codes"]:
        lines.append("")
        lines += _table(["code", "meaning", "reason", "initiator", "phase", "count"], [
            [c["code"], CLOSE_CODE_NAMES.get(c["code"], ""), c["reason"] or "(none)", c["initiator"],
             c["phase"], c["count"]] for c in report["close_codes"]])
    lines.append("")
    lat = report["latency_ms"]
    # the harness's own delays go beside the phases, named as the harness's:
    # time a token call waited inside loadkit, and the generator's lag
    harness = report.get("harness") or {}
    own = [(f"(harness) {name}", harness[key]) for name, key in (("token wait", "wait_ms"), ("lag", "lag_ms"))
           if (harness.get(key) or {}).get("count")]
    lines += _table(["latency ms", "count", "p50", "p95", "p99", "max"], [
        [phase, v.get("count", 0), v.get("p50"), v.get("p95"), v.get("p99"), v.get("max")]
        for phase, v in [*lat.items(), *own]])
    untimed = harness.get("untimed_at_stop") or {}
    if untimed:
        lines.append("read while the run was stopping, counted but not timed: "
                     + ", ".join(f"{phase} {n}" for phase, n in untimed.items()))
    rc = report.get("reconnect", {})
    if rc.get("attempts"):
        rm = rc["recover_ms"]
        lines.append("")
        lines.append(f"reconnects: {rc['attempts']} attempts, {rc['successes']} recovered; "
                     f"time to recover p50 {_fmt(rm.get('p50'))} ms, p95 {_fmt(rm.get('p95'))} ms")
    surv = report.get("survival", {})
    if surv:
        lines.append("survival (Kaplan-Meier, 95 % CI): " + ", ".join(_survival(k, v) for k, v in surv.items()))
    ka = report.get("keepalive", {})
    if ka.get("missed_pongs"):
        silence = ka.get("silence_ms", {}).get("max")
        lines.append(f"keepalive: {ka['missed_pongs']} missed pongs, {ka['timeouts']} keepalive timeouts"
                     + (f", longest silence from the server {silence / 1000:.1f} s" if silence else ""))
    if ka.get("refused") or ka.get("in_flight"):
        lines.append(_sends("pings", ka.get("pings_sent", 0), ka.get("pongs", 0), ka, (
            ("missed_pongs", "missed"), ("refused", "refused by the target"),
            ("in_flight", "awaiting a pong when their session ended"))))
    if report.get("errors"):
        lines.append("error frames: " + ", ".join(f"{k}×{v}" for k, v in report["errors"].items()))
    msgs = report.get("messages") or {}
    if msgs.get("sent") or msgs.get("agent_messages"):
        lines.append(_sends("messages", msgs.get("sent", 0), msgs.get("answered", 0), msgs, (
            ("unanswered", "unanswered in 60 s"), ("refused", "refused by the target"),
            ("in_flight", "awaiting an answer when their session ended")))
            + f"; {msgs.get('agent_messages', 0)} agent messages received")
    bad = report.get("bad_frames") or {}
    if bad.get("count"):
        lines.append(f"bad frames from the target: {bad['count']} in {bad.get('sessions', '?')} sessions; "
                     + ", ".join(f"{k}×{v}" for k, v in bad.get("by_kind", {}).items())
                     + "  (by phase: " + ", ".join(f"{k}×{v}" for k, v in bad.get("by_phase", {}).items()) + ")")
    gw = report.get("gateway")
    if gw:
        ours = _by_code(report["close_codes"])
        theirs = _by_code(gw.get("closes", []))
        same = gw["sessions"]["authenticated"] == s["authenticated"] and ours == theirs
        lines.append(f"embedded gateway's own record: authenticated {gw['sessions']['authenticated']}, "
                     f"closes {sum(theirs.values())} by code and initiator: "
                     + ("the same as the harness" if same else "DIFFERENT from the harness (see the report)"))
    for check in (report.get("validity") or {}).get("checks") or []:
        if not check.get("ok", True):
            label = _CHECK_LABEL.get(check.get("fails_as", "invalid"), "INVALID RUN")
            lines.append(f"{label}: {check.get('name')}: {check.get('detail')}")
    for t in report.get("thresholds", []):
        status = t.get("status") or ("pass" if t["passed"] else "fail")
        mark = _STATUS.get(status, status.upper())
        value = f"value {_fmt(t['value'])}" if t["value"] is not None else t.get("note", "no value")
        lines.append(f"threshold {mark}: {t['expr']}  ({value})")
    if "verdict" in report:
        reason = report.get("verdict_reason")
        lines.append(f"verdict: {report['verdict'].upper()}" + (f"  ({reason})" if reason else ""))
    lines.append("=" * 70)
    return "\n".join(lines)


def _by_code(closes: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    out: dict[tuple[Any, ...], int] = {}
    for c in closes:
        key = (c["code"], c["reason"], c["initiator"])
        out[key] = out.get(key, 0) + c["count"]
    return out


_STATUS = {"pass": "PASS", "fail": "FAIL", "not_measured": "NOT MEASURED", "vacuous": "PASS (vacuous)"}
_CHECK_LABEL = {"invalid": "INVALID RUN", "error": "HARNESS ERROR", "inconclusive": "INCONCLUSIVE RUN",
                "fail": "STOPPED"}


def _survival(mark: str, v: dict[str, Any]) -> str:
    if "estimate" not in v:  # an older report
        return f"{mark} {_pct(v.get('rate'))} ({v.get('reached')}/{v.get('eligible')})"
    if v["estimate"] is None:
        return f"{mark} not measured (nobody at risk)"
    return (f"{mark} {_pct(v['estimate'])} [{_pct(v['lower'])}, {_pct(v['upper'])}] "
            f"at risk {v['at_risk']}, drops {v['events']}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _sends(what: str, sent: Any, answered: Any, section: Mapping[str, Any],
           ends: tuple[tuple[str, str], ...]) -> str:
    """``messages: 338 sent, 336 answered, 2 awaiting ...``: where every send went, naming the ends that happened."""
    return f"{what}: {sent} sent, {answered} answered" + "".join(
        f", {section[key]} {label}" for key, label in ends if section.get(key))
