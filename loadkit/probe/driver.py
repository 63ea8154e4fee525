"""One guest's lifecycle, step by step, over the harness's own transport.

Why not ``SessionDriver``: a load test runs thousands of guests and keeps
only counts; the probe runs one and keeps everything, in an order a person
can follow (one keepalive and its pong, one message and its ack, then
``--hold``), and stops at the first thing that goes wrong. The wire work is
the same: ``GeventTransport`` with its optional ``trace`` hook, and the
profile's frames and classification. No socket is touched here.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any

import orjson

from loadkit.errors import ConnectFailed, ConnectionEnded, ConnectRefused, UpgradeRefused
from loadkit.probe.authdiff import grant_paths
from loadkit.probe.trace import TraceRecorder, parse_json
from loadkit.protocol.base import EventKind, Profile, TokenGrant
from loadkit.settings import Behaviour, HarnessSettings
from loadkit.transport import GeventTransport, WebSocket

#: Placeholders a ``--send-auth`` payload may use for this probe's grant.
PLACEHOLDERS = ("$TOKEN", "$GUEST_ID")

_E = EventKind


@dataclass(frozen=True)
class ProbePlan:
    base_url: str
    profile: Profile
    behaviour: Behaviour
    settings: HarnessSettings
    hold_s: float = 2.0
    #: the user's own auth payload (JSON text, sent byte for byte), instead of the profile's
    send_auth: str | None = None
    ssl_context: ssl.SSLContext | None = None


class _Ended(Exception):
    """The server ended the session in a frame (e.g. ConnectionClosedEvent): close and stop."""


def substitute(text: str, grant: TokenGrant) -> bytes:
    """The user's payload as sent: their exact text, ``$TOKEN`` / ``$GUEST_ID`` replaced.

    Replaced in the text itself (JSON-escaped), not re-serialized: what is
    replayed is byte for byte what the user's client would send, spacing,
    key order and number spelling included.
    """
    for placeholder, value in (("$TOKEN", grant.token), ("$GUEST_ID", grant.guest_id)):
        text = text.replace(placeholder, orjson.dumps(value).decode()[1:-1])
    return text.encode()


def kind_name(profile: Profile, data: bytes) -> str:
    return profile.classify(data).kind.name.lower()


class ProbeDriver:
    def __init__(self, plan: ProbePlan, rec: TraceRecorder) -> None:
        self.plan = plan
        self.rec = rec
        s = plan.settings
        self.transport = GeventTransport(open_timeout=s.connect_timeout_s, close_timeout=s.close_timeout_s,
                                         http_timeout=s.connect_timeout_s, ssl_context=plan.ssl_context,
                                         trace=rec.transport_hook)
        #: what the diagnosis compares with (see docs/probe.md, "expected")
        self.expected: dict[str, Any] = {"hold_s": plan.hold_s, "keepalive_s": s.keepalive_s,
                                         "guest": plan.behaviour.name,
                                         "required_scopes": _list_or_none(getattr(plan.profile, "required_scopes",
                                                                                  None))}

    def run(self) -> None:
        ws: WebSocket | None = None
        try:
            grant = self._token()
            if grant is None:
                return
            ws = self._connect(grant)
            if ws is None:
                return
            if self._authenticate(ws, grant):
                self._hold(ws, grant)
            self._close(ws, grant)
        except ConnectionEnded as exc:
            self._ended(exc)
        except BaseException:
            # Ctrl-C (or a probe bug) with the socket open: leave like a client
            # should, so the gateway records a close, and the trace says how.
            if ws is not None and not ws.closed:
                try:
                    self._ended(ws.close(1001, "probe interrupted", wait=True))
                except Exception:  # noqa: BLE001 (already leaving; the original error matters)
                    ws.abort()
                    self.rec.add("note", {"detail": "the probe dropped the connection without a close frame"})
            raise
        finally:
            if ws is not None and not ws.closed:
                ws.abort()
            self.transport.close()

    # -- steps -------------------------------------------------------------------------------------

    def _token(self) -> TokenGrant | None:
        rec, profile = self.rec, self.plan.profile
        request = profile.token_request(self.plan.base_url, 1)
        if request is None:
            grant = profile.token_grant(None, b"", 1)
            self._secret(grant)
            rec.add("token_local", {"detail": "the profile makes its own token; no token call"})
        else:
            rec.add("token_request", {"method": request.method, "url": request.url,
                                      "headers": [list(h) for h in request.headers], "body": request.body})
            try:
                answer = self.transport.http(request)
            except ConnectRefused as exc:
                rec.add("token_failed", {"error": "connect_refused", "detail": str(exc)})
                return None
            except ConnectFailed as exc:
                rec.add("token_failed", _failure(exc))
                return None
            t1 = rec.now()
            status, body = answer.status, answer.body
            timing = {"duration_ms": _ms(answer.wire_s), "waited_ms": _ms(answer.waited_s)}
            if not 200 <= status < 300:
                rec.add("token_response", {"status": status, "body": body, **timing}, at=t1)
                return None
            try:
                grant = profile.token_grant(status, body, 1)
            except ValueError as exc:
                rec.add("token_response", {"status": status, "body": body, **timing, "malformed": str(exc)}, at=t1)
                return None
            self._secret(grant)
            rec.add("token_response", {"status": status, "body": body, **timing}, at=t1)
        expires = grant.expires_at
        rec.add("grant", {"guestId": grant.guest_id, "token": grant.token, "expiresAt": expires,
                          "expires_in_s": None if expires is None else round(expires - time.time(), 3),
                          "scopes": _list_or_none(grant_scopes(profile, grant))})
        return grant

    def _connect(self, grant: TokenGrant) -> WebSocket | None:
        rec, profile = self.rec, self.plan.profile
        url = profile.websocket_url(self.plan.base_url, grant)
        headers = profile.handshake_headers(self.plan.base_url)
        rec.add("connect", {"url": url, "timeout_s": self.plan.settings.connect_timeout_s})
        try:
            return self.transport.connect(url, headers, self.plan.settings.connect_timeout_s)
        except ConnectRefused as exc:
            rec.add("connect_failed", {"error": "connect_refused", "detail": str(exc)})
        except UpgradeRefused as exc:
            rec.add("upgrade_refused", {"status": exc.status})
        except ConnectFailed as exc:
            fields = _failure(exc)
            failed = [e for e in rec.events if e["event"] == "tls_failed"]
            if failed and _verify_failure(failed[-1].get("reason"), failed[-1].get("verify_message")):
                fields.update(error="tls_verification_failed", verify_message=failed[-1].get("verify_message"))
            rec.add("connect_failed", fields)
        return None

    def _authenticate(self, ws: WebSocket, grant: TokenGrant) -> bool:
        rec, plan, profile = self.rec, self.plan, self.plan.profile
        reference = profile.auth_frame(grant, "normal")
        ok, parsed = parse_json(reference) if reference is not None else (False, None)
        if ok:
            shown = rec.redactor.value(parsed)
            self.expected["auth_frame"] = shown
            self.expected["grant_paths"] = sorted(grant_paths(shown, grant.guest_id,
                                                              rec.redactor.label(grant.token)))
        if plan.send_auth is not None:
            frame: bytes | None = substitute(plan.send_auth, grant)
            self.expected["auth_source"] = "--send-auth"
        else:
            frame = profile.auth_frame(grant, plan.behaviour.auth_style)
            self.expected["auth_source"] = f"profile {profile.name}, auth style {plan.behaviour.auth_style}"
        timeout = plan.settings.auth_timeout_s
        if frame is None:
            rec.add("note", {"detail": f"guest {plan.behaviour.name!r} sends no auth frame; waiting {timeout:g} s"})
        else:
            rec.expect("auth")
            ws.send(frame)
        if self._wait(ws, rec.now() + timeout, _E.AUTH_OK, None):
            return True
        rec.add("timeout", {"waiting_for": "auth answer", "after_s": timeout})
        return False

    def _hold(self, ws: WebSocket, grant: TokenGrant) -> None:
        rec, plan, profile, s = self.rec, self.plan, self.plan.profile, self.plan.settings
        end_at = rec.now() + plan.hold_s
        seq = 0
        if plan.behaviour.keepalive:
            seq += 1
            frame, ref = profile.ping_frame(seq, grant)
            rec.expect("keepalive")
            ws.send(frame)
            if not self._wait(ws, rec.now() + s.pong_timeout_s, _E.PONG, ref):
                rec.add("timeout", {"waiting_for": "pong", "after_s": s.pong_timeout_s})
                return
        if plan.behaviour.messages:
            seq += 1
            frame, ref = profile.message_frame(seq, "hello from loadkit probe", grant)
            rec.expect("message")
            ws.send(frame)
            if not self._wait(ws, rec.now() + s.pong_timeout_s, _E.ACK, ref):
                rec.add("timeout", {"waiting_for": "ack", "after_s": s.pong_timeout_s})
                return
        next_ping = rec.now() + s.keepalive_s if plan.behaviour.keepalive else float("inf")
        # A guest with its own message pace (fast_messages) keeps it up during the hold,
        # so a rate limit shows as it would under load; others only keep alive.
        pace = plan.behaviour.message_interval
        next_msg = rec.now() + pace[0] if pace is not None else float("inf")
        while rec.now() < end_at:
            if rec.now() >= next_ping:
                seq += 1
                frame, ref = profile.ping_frame(seq, grant)
                rec.expect("keepalive")
                ws.send(frame)
                next_ping = rec.now() + s.keepalive_s
            if pace is not None and rec.now() >= next_msg:
                seq += 1
                frame, ref = profile.message_frame(seq, "hello from loadkit probe", grant)
                rec.expect("message")
                ws.send(frame)
                next_msg = rec.now() + pace[0]
            self._wait(ws, min(end_at, next_ping, next_msg), None, None)

    def _close(self, ws: WebSocket, grant: TokenGrant) -> None:
        for frame in self.plan.profile.goodbye_frames(grant):
            self.rec.expect("goodbye")
            ws.send(frame)
        self._ended(ws.close(1000, "", wait=True))

    # -- helpers -----------------------------------------------------------------------------------

    def _wait(self, ws: WebSocket, deadline: float, kind: EventKind | None, ref: Any) -> bool:
        """Read frames until one of ``kind`` (with ``ref``, if given) arrives (True) or ``deadline`` (False).

        Every frame is traced by the transport's hook; ``ConnectionEnded``
        propagates. A frame saying the server ended the session closes it.
        """
        profile = self.plan.profile
        while True:
            remaining = deadline - self.rec.now()
            if remaining <= 0:
                return False
            data = ws.recv(remaining)
            if data is None:
                return False
            ev = profile.classify(data)
            if ev.kind is _E.SESSION_ENDED:
                raise ConnectionEnded(*_close_of(ws))
            if kind is not None and ev.kind is kind and (ref is None or ev.ref == ref):
                return True

    def _ended(self, exc: ConnectionEnded) -> None:
        answered = any(e["event"] == "frame_received" and e.get("opcode") == "close" for e in self.rec.events)
        self.rec.add("ended", {"code": exc.code, "reason": exc.reason, "initiator": exc.initiator,
                               "close_frame": exc.initiator != "none", "answered": answered})

    def _secret(self, grant: TokenGrant) -> None:
        self.rec.redactor.add(grant.token, "grant token")


def grant_scopes(profile: Profile, grant: TokenGrant) -> Any:
    """The grant's scopes when the profile can read them (``grant.extra["scopes"]``), else None."""
    scopes = grant.extra.get("scopes")
    return scopes if isinstance(scopes, (list, tuple)) else None


def _close_of(ws: WebSocket) -> tuple[int, str, str]:
    ended = ws.close(1000, "", wait=True)
    return ended.code, ended.reason, ended.initiator


def _failure(exc: ConnectFailed) -> dict[str, Any]:
    """A ConnectFailed as trace fields; a TLS verification failure named as such."""
    cause = exc.__cause__ or exc.__context__
    verify = getattr(cause, "verify_message", None)
    error = "tls_verification_failed" if _verify_failure(getattr(cause, "reason", None), verify) \
        or _verify_failure(exc.reason, None) else "connect_failed"
    fields: dict[str, Any] = {"error": error, "detail": str(exc)}
    if verify:
        fields["verify_message"] = verify
    return fields


def _verify_failure(reason: Any, verify_message: Any) -> bool:
    return bool(verify_message) or "CERTIFICATE_VERIFY_FAILED" in str(reason or "")


def _list_or_none(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, (list, tuple)) else None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
