"""The probe's trace and diagnosis as text for a terminal: pure.

One event per block: time since the probe started, the step, an arrow for
the direction (``→`` sent, ``←`` received), then the details, with JSON
pretty-printed underneath. Durations of DNS, TCP, TLS and the upgrade are
the gaps between their events, so they add up to the connect time.
"""

from __future__ import annotations

import json
from typing import Any

from loadkit.probe.diagnose import Diagnosis

_INDENT = " " * 22


class Renderer:
    """Turns exported events into lines; remembers the times it needs for durations."""

    def __init__(self) -> None:
        self._times: dict[str, float] = {}

    def event(self, ev: dict[str, Any]) -> list[str]:
        name = ev["event"]
        t = float(ev["t"])
        head, body = self._describe(name, ev, t)
        self._times[name] = t
        lines = [f"+{t:8.3f}s  {head}"]
        lines += [_INDENT + line for line in body]
        return lines

    def _since(self, name: str, t: float, ev: dict[str, Any] | None = None) -> str:
        if ev is not None and ev.get("duration_ms") is not None:
            return f" ({float(ev['duration_ms']):.1f} ms)"
        start = self._times.get(name)
        return "" if start is None else f" ({(t - start) * 1000:.1f} ms)"

    def _describe(self, name: str, ev: dict[str, Any], t: float) -> tuple[str, list[str]]:
        if name == "token_request":
            return (f"token   → {ev['method']} {ev['url']}",
                    [f"{h}: {v}" for h, v in ev.get("headers", [])] + _body(ev.get("body")))
        if name == "token_response":
            extra = f"  (cannot be read: {ev['malformed']})" if ev.get("malformed") else ""
            return f"token   ← HTTP {ev['status']} in {ev.get('duration_ms')} ms{extra}", _body(ev.get("body"))
        if name == "token_failed":
            return f"token   ✗ {ev.get('error')}: {ev.get('detail')}", _verify(ev)
        if name == "token_local":
            return f"token     {ev.get('detail')}", []
        if name == "grant":
            expires = ev.get("expiresAt")
            when = "no expiry given" if expires is None else f"expires at {expires} (in {ev.get('expires_in_s')} s)"
            scopes = "scopes not given" if ev.get("scopes") is None else f"scopes {json.dumps(ev['scopes'])}"
            return f"grant     guestId {ev.get('guestId')}, token {ev.get('token')}, {when}, {scopes}", []
        if name == "connect":
            return f"connect → {ev['url']}", []
        if name == "dns":
            return f"dns       {ev['host']} → {', '.join(ev['addresses'])}{self._since('connect', t, ev)}", []
        if name == "tcp":
            return f"tcp       connected to {ev['address']}:{ev['port']}{self._since('dns', t, ev)}", []
        if name == "tcp_failed":
            return f"tcp     ✗ {ev['address']}:{ev['port']}: {ev['error']}", []
        if name == "tls":
            return (f"tls       {ev.get('version')} {ev.get('cipher')}{self._since('tcp', t, ev)}",
                    [f"certificate: {ev.get('subject')} (issuer {ev.get('issuer')}, until {ev.get('not_after')})"])
        if name == "tls_failed":
            return f"tls     ✗ {ev.get('reason')}", _verify(ev)
        if name == "upgrade_request":
            return f"upgrade → GET {ev['path']}", [f"{h}: {v}" for h, v in ev.get("headers", [])]
        if name == "upgrade_response":
            body = _body(ev.get("body"))
            return (f"upgrade ← {ev['status']} {ev.get('reason', '')}{self._since('upgrade_request', t, ev)}",
                    [f"{h}: {v}" for h, v in ev.get("headers", [])] + body)
        if name in ("connect_failed", "upgrade_refused"):
            what = ev.get("error") if name == "connect_failed" else f"upgrade refused: HTTP {ev.get('status')}"
            return f"connect ✗ {what}{': ' + str(ev.get('detail')) if ev.get('detail') else ''}", _verify(ev)
        if name in ("frame_sent", "frame_received"):
            return self._frame(name, ev)
        if name in ("eof_sent", "eof_received"):
            return f"tcp     {'→' if name == 'eof_sent' else '←'} end of stream (FIN)", []
        if name == "timeout":
            return f"timeout   no {ev.get('waiting_for')} within {ev.get('after_s')} s", []
        if name == "ended":
            if ev.get("initiator") == "none":
                return "ended     connection lost: no close frame (1006)", []
            reason = f" {ev['reason']!r}" if ev.get("reason") else " (no reason)"
            answered = "" if ev.get("initiator") != "client" else (
                ", answered" if ev.get("answered") else ", not answered")
            return f"ended     closed {ev.get('code')}{reason} by the {ev.get('initiator')}{answered}", []
        return f"{name:<9} {ev.get('detail', '')}", []

    def _frame(self, name: str, ev: dict[str, Any]) -> tuple[str, list[str]]:
        arrow = "→" if name == "frame_sent" else "←"
        op = ev.get("opcode")
        if op == "close":
            reason = f" {ev['reason']!r}" if ev.get("reason") else ""
            return f"frame   {arrow} close {ev.get('code')}{reason}", []
        label = ev.get("role") or ev.get("kind")
        tag = f" [{label}]" if label else ""
        head = f"frame   {arrow} {op}{tag} {ev.get('size', 0)} bytes"
        if op in ("ping", "pong"):
            return head + (f" payload {ev['payload']!r}" if ev.get("payload") else ""), []
        return head, _body(ev)


def _body(body: Any) -> list[str]:
    if not body:
        return []
    if "json" in body:
        return json.dumps(body["json"], indent=2, ensure_ascii=False).splitlines()
    if "text" in body:
        return [repr(body["text"])]
    if "hex" in body:
        return [f"(binary) {body['hex']}"]
    return []


def _verify(ev: dict[str, Any]) -> list[str]:
    return [f"verification: {ev['verify_message']}"] if ev.get("verify_message") else []


def diagnosis_lines(diagnosis: Diagnosis) -> list[str]:
    lines = ["", "diagnosis: " + ("completed" if diagnosis.completed else "NOT completed")]
    for cause in diagnosis.causes:
        lines.append(f"  {cause.cause}")
        lines += [f"    - {line}" for line in cause.evidence]
    if diagnosis.folklore:
        lines += ["", "the seed thread's folklore, checked against this trace:"]
        for claim in diagnosis.folklore:
            lines.append(f"  {claim['verdict']}: {claim['says']}")
            lines += [f"    - {line}" for line in claim["evidence"]]
    return lines
