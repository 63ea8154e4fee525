"""From a probe's trace to named causes, each with its evidence: pure.

Trace in, causes out: ``diagnose(events, expected)`` reads only the
redacted events (``trace.TraceRecorder.exported``) and what the profile
expected (its auth frame, the fields that carry the grant, the scopes it
needs), so every cause can be unit-tested from a hand-written trace and
every piece of evidence cites trace events by index and time.

The vocabulary (``CAUSES``, in ``vocabulary.py``) is documented in
docs/probe.md. The seed thread's folklore is checked where the trace can
check it (``FOLKLORE``): each claim gets a verdict and the evidence.
"""

from __future__ import annotations

from typing import Any

from loadkit.probe.authdiff import FieldDiff, diff_auth, schema_problems
from loadkit.probe.vocabulary import CAUSES, FOLKLORE, Cause, Diagnosis

__all__ = ["CAUSES", "FOLKLORE", "Cause", "Diagnosis", "diagnose"]


class _Trace:
    """Index of the events the rules ask about."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def first(self, name: str, **match: Any) -> int | None:
        for i, ev in enumerate(self.events):
            if ev["event"] == name and all(ev.get(k) == v for k, v in match.items()):
                return i
        return None

    def all(self, name: str, start: int = 0, end: int | None = None, **match: Any) -> list[int]:
        stop = len(self.events) if end is None else end
        return [i for i in range(start, stop) if self.events[i]["event"] == name
                and all(self.events[i].get(k) == v for k, v in match.items())]

    def at(self, i: int) -> str:
        return f"+{self.events[i]['t']:.3f} s"

    def t(self, i: int) -> float:
        return float(self.events[i]["t"])


def diagnose(events: list[dict[str, Any]], expected: dict[str, Any]) -> Diagnosis:
    """The causes (``CAUSES``) and checked folklore (``FOLKLORE``) of one probe's trace."""
    tr = _Trace(events)
    result = _diagnose(tr, expected)
    stopped = tr.first("interrupted")
    if stopped is not None:
        result.causes.append(Cause("interrupted", [f"stopped at {tr.at(stopped)}; the trace ends there"],
                                   [stopped]))
        result.completed = False
    return result


def _diagnose(tr: _Trace, expected: dict[str, Any]) -> Diagnosis:
    events = tr.events
    causes: list[Cause] = []
    folklore: list[dict[str, Any]] = []
    if not _token(tr, causes):
        return Diagnosis(False, causes, folklore)
    _grant(tr, expected, causes, folklore, authenticated=tr.first("frame_received", kind="auth_ok") is not None)
    if not _connect(tr, causes):
        return Diagnosis(False, causes, folklore)
    opened = tr.first("upgrade_response", status=101)
    auth = tr.first("frame_sent", role="auth")
    ok = tr.first("frame_received", kind="auth_ok")
    end = tr.first("ended")
    diffs = _auth_diff(tr, auth, expected, causes, authenticated=ok is not None)
    if opened is not None and auth is not None:
        folklore.append(_claim("auth_before_open", "refuted", [
            f"the 101 answer arrived at {tr.at(opened)} and the auth frame was sent at {tr.at(auth)}, "
            f"{(tr.t(auth) - tr.t(opened)) * 1000:.1f} ms later: no frame can be sent before the 101, "
            "and none was"], [opened, auth]))
    if ok is None:
        _unauthenticated(tr, auth, end, diffs, causes, folklore)
    else:
        _authenticated(tr, ok, end, expected, causes, folklore)
        if auth is not None and not tr.all("frame_sent", 0, auth, opcode="text"):
            folklore.append(_claim("ping_or_init_first", "refuted", [
                f"auth was the first frame sent ({tr.at(auth)}) and was answered auth_ok at {tr.at(ok)}"],
                [auth, ok]))
    if not causes and ok is not None and end is not None and tr.first("interrupted") is None:
        e = events[end]
        causes.append(Cause("ok", [f"authenticated at {tr.at(ok)}; closed {e.get('code')} by the "
                                   f"{e.get('initiator')} at {tr.at(end)}, the close answered"], [ok, end]))
        return Diagnosis(True, causes, folklore)
    return Diagnosis(False, causes, folklore)


# -- phases -------------------------------------------------------------------------------------


def _token(tr: _Trace, causes: list[Cause]) -> bool:
    failed = tr.first("token_failed")
    if failed is not None:
        causes.append(_unreachable(tr, failed, "the token call"))
        return False
    resp = tr.first("token_response")
    if resp is None:
        return tr.first("token_local") is not None or tr.first("grant") is not None
    ev = tr.events[resp]
    status = ev.get("status")
    if isinstance(status, int) and not 200 <= status < 300:
        causes.append(Cause("token_refused", [
            f"{_request_line(tr)} answered HTTP {status} at {tr.at(resp)}: {_body_summary(ev.get('body'))}"],
            [resp], {"status": status}))
        return False
    if ev.get("malformed"):
        causes.append(Cause("token_refused", [
            f"HTTP {status} at {tr.at(resp)}, but the profile cannot read the answer: {ev['malformed']}; "
            f"body {_body_summary(ev.get('body'))}"], [resp], {"status": status}))
        return False
    return True


def _grant(tr: _Trace, expected: dict[str, Any], causes: list[Cause], folklore: list[dict[str, Any]],
           authenticated: bool) -> None:
    """What the grant itself says (scopes, expiry); a cause only if auth then failed."""
    g = tr.first("grant")
    if g is None:
        return
    ev = tr.events[g]
    required = expected.get("required_scopes")
    scopes = ev.get("scopes")
    if isinstance(required, list) and isinstance(scopes, list):
        lacking = [s for s in required if s not in scopes]
        if lacking and not authenticated:
            causes.append(Cause("token_scope_missing", [
                f"the grant ({tr.at(g)}) has scopes {scopes}; the profile needs {required}: lacks {lacking}"],
                [g], {"scopes": scopes, "required": required}))
        folklore.append(_claim("missing_scope", "confirmed" if lacking else "refuted", [
            f"the grant's scopes are {scopes}; the profile needs {required}"], [g]))
    expires = ev.get("expiresAt")
    use = tr.first("frame_sent", role="auth") or tr.first("connect")
    if isinstance(expires, (int, float)) and use is not None and tr.events[use]["epoch"] >= expires \
            and not authenticated:
        late = tr.events[use]["epoch"] - expires
        causes.append(Cause("token_expired", [
            f"the grant expires at {expires} (epoch s); it was used at {tr.at(use)}, {late:.3f} s after that"],
            [g, use], {"expiresAt": expires}))


def _connect(tr: _Trace, causes: list[Cause]) -> bool:
    failed = tr.first("connect_failed")
    if failed is not None:
        causes.append(_unreachable(tr, failed, "the WebSocket connection"))
        return False
    refused = tr.first("upgrade_refused")
    if refused is not None:
        resp = tr.first("upgrade_response")
        ev = tr.events[resp] if resp is not None else tr.events[refused]
        status = tr.events[refused].get("status")
        headers = {name.lower(): value for name, value in ev.get("headers", [])}
        extra = f"; Retry-After {headers['retry-after']}" if "retry-after" in headers else ""
        causes.append(Cause("upgrade_refused", [
            f"the upgrade was answered HTTP {status} {ev.get('reason', '')} at {tr.at(refused)} instead of 101"
            f"{extra}; body {_body_summary(ev.get('body'))}"], [i for i in (resp, refused) if i is not None],
            {"status": status}))
        return False
    return tr.first("upgrade_response", status=101) is not None


def _auth_diff(tr: _Trace, auth: int | None, expected: dict[str, Any], causes: list[Cause],
               authenticated: bool) -> list[FieldDiff]:
    frame = expected.get("auth_frame")
    if auth is None or frame is None or "json" not in tr.events[auth]:
        return []
    diffs = diff_auth(tr.events[auth]["json"], frame, set(expected.get("grant_paths", [])))
    if authenticated:
        return diffs
    schema = schema_problems(diffs)
    if schema:
        causes.append(Cause("auth_schema_mismatch", [d.explain() for d in schema], [auth],
                            {"diff": [d.as_dict() for d in schema], "expected_frame": frame}))
    creds = [d for d in diffs if d.problem == "credential"]
    if creds:
        causes.append(Cause("auth_credentials_mismatch", [d.explain() for d in creds], [auth],
                            {"diff": [d.as_dict() for d in creds]}))
    return diffs


def _unauthenticated(tr: _Trace, auth: int | None, end: int | None, diffs: list[FieldDiff],
                     causes: list[Cause], folklore: list[dict[str, Any]]) -> None:
    start = auth if auth is not None else (tr.first("upgrade_response", status=101) or 0)
    timeout = tr.first("timeout", waiting_for="auth answer")
    if timeout is not None:
        causes.append(Cause("auth_timeout", [
            f"no answer to {'the auth frame' if auth is not None else 'the open socket'} within "
            f"{tr.events[timeout].get('after_s')} s (the probe gave up at {tr.at(timeout)})"],
            [i for i in (auth, timeout) if i is not None]))
        return
    if end is None:
        return
    e = tr.events[end]
    code, reason, who = e.get("code"), e.get("reason") or "", e.get("initiator")
    received = [i for i in tr.all("frame_received", start, end) if tr.events[i].get("opcode") != "close"]
    errors = [i for i in received if tr.events[i].get("kind") in ("auth_refused", "error")]
    closed = _close_frame(tr, start, end)
    close_line = f"closed {code}{' ' + repr(reason) if reason else ' with no reason'} by the {who} at {tr.at(closed)}"
    if who == "none":
        causes.append(Cause("connection_lost", [f"the connection ended with no close frame at {tr.at(end)}, "
                                                "during auth"], [end]))
        return
    if auth is None and who == "server":
        opened = tr.first("upgrade_response", status=101)
        gap = f", {tr.t(closed) - tr.t(opened):.3f} s after the 101" if opened is not None else ""
        causes.append(Cause("auth_timeout", [f"no auth frame was sent; the gateway {close_line}{gap}"], [end]))
        return
    if errors:
        shown = "; ".join(_frame_summary(tr.events[i]) for i in errors)
        scope = [c for c in causes if c.cause == "token_scope_missing"]
        if not scope:
            causes.append(Cause("auth_refused", [f"error frame(s) {shown}, then {close_line}"], [*errors, end]))
        return
    if auth is not None and who == "server" and code == 1000 and not received:
        fits = [c.cause for c in causes if c.cause in ("auth_schema_mismatch", "auth_credentials_mismatch",
                                                        "token_expired", "token_scope_missing")]
        delay = (tr.t(closed) - tr.t(auth)) * 1000
        evidence = [f"the auth frame was sent at {tr.at(auth)}; the gateway {close_line}, {delay:.1f} ms later, "
                    "with no frame in between (no error frame)"]
        if fits:
            evidence.append("consistent with: " + ", ".join(fits) + " (above)")
        else:
            evidence.append("the frame is the profile's own and carries this probe's grant: the gateway "
                            "refused it for a reason it does not say (it may expect another schema, or "
                            "not trust this token); a gateway in explicit mode would send an error frame")
        causes.append(Cause("auth_refused_silently", evidence, [auth, end], {"consistent_with": fits}))
        folklore.append(_claim("delay_before_auth", "refuted", [
            f"the gateway closed {delay:.1f} ms after the auth frame: it judged the frame, not its timing; "
            "a delay before sending it would not change the answer"], [auth, end]))
        casing = [d for d in diffs if d.problem in ("value_case", "key_case")]
        if casing:
            folklore.append(_claim("case_sensitive_type", "confirmed", [d.explain() for d in casing]
                                   + [f"and the gateway {close_line}"], [auth, end]))
        return
    if code == 4003 and any(c.cause == "token_scope_missing" for c in causes):
        return
    causes.append(Cause("auth_refused", [f"the {close_line} during auth"], [end]))


def _authenticated(tr: _Trace, ok: int, end: int | None, expected: dict[str, Any], causes: list[Cause],
                   folklore: list[dict[str, Any]]) -> None:
    for waiting, name in (("pong", "keepalive_unanswered"), ("ack", "message_unanswered")):
        i = tr.first("timeout", waiting_for=waiting)
        if i is not None:
            causes.append(Cause(name, [f"no {waiting} within {tr.events[i].get('after_s')} s "
                                       f"(gave up at {tr.at(i)})"], [i]))
    if end is None:
        return
    e = tr.events[end]
    code, reason, who = e.get("code"), e.get("reason") or "", e.get("initiator")
    idle = tr.events[ok].get("json", {}).get("idleTimeout") if isinstance(tr.events[ok].get("json"), dict) else None
    expired = [i for i in tr.all("frame_received", ok, end) if tr.events[i].get("kind") == "session_expired"]
    if who == "none":
        causes.append(Cause("connection_lost", [f"authenticated at {tr.at(ok)}; the connection ended with no "
                                                f"close frame at {tr.at(end)}"], [ok, end]))
        return
    if who == "client":
        if e.get("answered") is False:
            causes.append(Cause("close_unanswered", [f"the probe closed {code} at {tr.at(end)}; no close frame "
                                                     "came back"], [end]))
        elif idle is not None and tr.t(end) - tr.t(ok) >= float(idle) and tr.first("frame_sent", role="keepalive"):
            folklore.append(_claim("keepalive_or_killed", "consistent", [
                f"auth_ok announced idleTimeout {idle}; pinging every {expected.get('keepalive_s')} s kept the "
                f"session open for {tr.t(end) - tr.t(ok):.1f} s"], [ok, end]))
        return
    closed = _close_frame(tr, ok, end)
    line = f"closed {code}{' ' + repr(reason) if reason else ' with no reason'} by the server at {tr.at(closed)}, " \
           f"{tr.t(closed) - tr.t(ok):.3f} s after auth_ok"
    if expired or (code == 4006 and "expire" in reason.lower()):
        g = tr.first("grant")
        exp = tr.events[g].get("expiresAt") if g is not None else None
        frame = f"session_expired frame at {tr.at(expired[0])}; " if expired else ""
        grant = f"; the grant expired at {exp} (epoch s)" if exp else ""
        causes.append(Cause("token_expired", [frame + line + grant], [*expired, end], {"expiresAt": exp}))
        return
    sent = [i for i in tr.all("frame_sent", 0, closed) if tr.events[i].get("opcode") != "close"]
    last = sent[-1] if sent else ok
    silence = tr.t(closed) - tr.t(last)
    idle_like = (idle is not None and silence >= 0.9 * float(idle)) or "idle" in reason.lower()
    if idle_like:
        evidence = [f"the client's last frame was sent at {tr.at(last)}; {silence:.3f} s of silence later "
                    f"the server {line.split(' by the server ')[0]} ({tr.at(closed)})"]
        if idle is not None:
            evidence.append(f"auth_ok announced idleTimeout {idle}")
        causes.append(Cause("no_keepalive", evidence, [last, end], {"silence_s": round(silence, 3)}))
        folklore.append(_claim("keepalive_or_killed", "confirmed", evidence, [last, end]))
        return
    evidence = [line, f"the client's last frame before it was sent at {tr.at(last)} ({silence:.3f} s earlier)"]
    refusals = [i for i in tr.all("frame_received", ok, closed) if tr.events[i].get("kind") in
                ("rate_limited", "error", "auth_refused")]
    if refusals:
        shown = "; ".join(_frame_summary(tr.events[i]) for i in refusals[-3:])
        evidence.append(f"{len(refusals)} error frame(s) came first, the last: {shown}")
    causes.append(Cause("server_closed_after_auth", evidence, [*refusals, ok, end],
                        {"code": code, "reason": reason}))


# -- helpers ---------------------------------------------------------------------------------------


def _unreachable(tr: _Trace, i: int, what: str) -> Cause:
    ev = tr.events[i]
    error = ev.get("error", "connect_failed")
    detail = ev.get("detail", "")
    extra = f" ({ev['verify_message']})" if ev.get("verify_message") else ""
    lines = [f"{what} failed at {tr.at(i)}: {detail}{extra}"]
    for j in tr.all("tcp_failed") + tr.all("tls_failed"):
        lines.append(f"{tr.events[j]['event']} at {tr.at(j)}: "
                     f"{tr.events[j].get('error') or tr.events[j].get('verify_message') or tr.events[j].get('reason')}")
    return Cause(error if error in CAUSES else "connect_failed", lines, [i])


def _close_frame(tr: _Trace, start: int, end: int) -> int:
    """The server's close frame between ``start`` and ``end`` (the moment it closed), else ``end``."""
    frames = tr.all("frame_received", start, end, opcode="close")
    return frames[0] if frames else end


def _request_line(tr: _Trace) -> str:
    req = tr.first("token_request")
    if req is None:
        return "the token call"
    return f"{tr.events[req].get('method')} {tr.events[req].get('url')}"


def _body_summary(body: Any) -> str:
    if not body:
        return "(empty)"
    if "json" in body:
        value = body["json"]
        if isinstance(value, dict):
            keys = [k for k in ("error", "message", "code") if k in value]
            if keys:
                return ", ".join(f"{k}={value[k]!r}" for k in keys)
        text = repr(value)
    else:
        text = str(body.get("text", body.get("hex", "")))
    return text if len(text) <= 160 else text[:157] + "..."


def _frame_summary(ev: dict[str, Any]) -> str:
    value = ev.get("json")
    if isinstance(value, dict):
        parts = [f"{k}={value[k]!r}" for k in ("type", "code", "message") if k in value]
        if parts:
            return "{" + ", ".join(parts) + "}" + f" at +{ev['t']:.3f} s"
    return f"{ev.get('kind', 'frame')} at +{ev['t']:.3f} s"


def _claim(name: str, verdict: str, evidence: list[str], events: list[int]) -> dict[str, Any]:
    return {"claim": name, "says": FOLKLORE[name], "verdict": verdict, "evidence": evidence, "events": events}
