"""The session's first phases: token, connect and auth.

Each phase times itself for Locust (``report``) and for the recorder, and
either hands the next phase what it needs or raises what ended the session
(``run_session`` in ``driver.py`` turns that into an ``Ending``). Auth is
the one phase that reads frames: an explicit refusal waits ``close_timeout``
for the protocol's close, any other in-band refusal or session-ending
answer ends auth at once, and a bad frame is counted in ``during_auth``.
"""

from __future__ import annotations

from loadkit.connection import ConnectAttempt, Connection
from loadkit.errors import (
    ConnectFailed,
    ConnectionEnded,
    ConnectRefused,
    HttpStatusError,
    UpgradeRefused,
)
from loadkit.failures import Failure
from loadkit.lifecycle import Cause, Ending, Lifecycle, Step
from loadkit.metrics.recorder import HARNESS_WAIT
from loadkit.protocol.base import (
    UNMATCHED_ANSWER,
    TokenGrant,
)
from loadkit.settings import Behaviour
from loadkit.session.base import _E, SessionBase, SessionEnded, expected_drop

#: Answers to the auth frame that end auth at once as auth_refused.
_AUTH_ENDERS = frozenset({_E.AUTH_REFUSED, _E.ERROR, _E.RATE_LIMITED, _E.SESSION_ENDED, _E.SESSION_EXPIRED})


class Phases(SessionBase):
    """Token, connect and auth, in that order; a reconnect's success is recorded here."""

    __slots__ = ()

    def _token(self, lc: Lifecycle, grant: TokenGrant | None, guest_no: int) -> TokenGrant:
        t = self.transport
        if grant is not None:
            lc.step(Step.RESUME, t.now())
            return grant
        lc.step(Step.BEGIN, t.now())
        request = self.profile.token_request(self.base_url, guest_no)
        if request is None:
            grant = self.profile.token_grant(None, b"", guest_no)
        else:
            t0 = t.now()
            try:
                answer = t.http(request)
            except (ConnectRefused, ConnectFailed) as exc:
                self.report("token", (t.now() - t0) * 1000.0, exc, 0)
                raise
            # The target's latency starts when the request went on the wire;
            # the wait before that (a connection slot, the resolver) is the harness's.
            self.recorder.observe(HARNESS_WAIT, int(answer.waited_s * 1e6))
            wire_ms = answer.wire_s * 1000.0
            if not 200 <= answer.status < 300:
                refused = HttpStatusError(answer.status, answer.body)
                self.report("token", wire_ms, refused, len(answer.body))
                raise refused
            try:
                grant = self.profile.token_grant(answer.status, answer.body, guest_no)
            except ValueError as exc:  # the profile could not read the answer: the target's body
                self.report("token", wire_ms, exc, len(answer.body))
                raise HttpStatusError(answer.status, b"malformed token response") from None
            except HttpStatusError as exc:
                self.report("token", wire_ms, exc, len(answer.body))
                raise
            self._timed("token", answer.wire_s, len(answer.body))
        lc.step(Step.TOKEN_OK, t.now())
        return grant

    def _connect(self, lc: Lifecycle, grant: TokenGrant, attempt: ConnectAttempt) -> Connection:
        t = self.transport
        url = self.profile.websocket_url(self.base_url, grant)
        headers = self.profile.handshake_headers(self.base_url)
        t0 = t.now()
        try:
            ws = t.connect(url, headers, self.settings.connect_timeout_s, attempt)
        except (ConnectRefused, ConnectFailed, UpgradeRefused) as exc:
            self.report("connect", (t.now() - t0) * 1000.0, exc, 0)
            raise
        t1 = t.now()
        self._timed("connect", t1 - t0, 0)
        lc.step(Step.OPENED, t1)
        return ws

    def _authenticate(self, lc: Lifecycle, ws: Connection, grant: TokenGrant, behaviour: Behaviour) -> Ending | None:
        """Send auth, wait for the answer. None when authenticated, else how it ended."""
        t = self.transport
        resumed = lc.resumed
        frame = self.profile.auth_frame(grant, behaviour.auth_style)
        t0 = t.now()
        if frame is not None:
            try:
                ws.send(frame)
            except ConnectionEnded as exc:
                self.report("auth", (t.now() - t0) * 1000.0, exc, 0)
                raise
            # Not held through the wait: orjson's bytes carry a 4 KiB buffer, and blocks
            # like it, freed between sessions' long-lived objects, fragment the heap.
            del frame
        deadline = t0 + self.settings.auth_timeout_s
        refusal: str | None = None  # an explicit refusal came: what it said
        while True:
            try:
                data = ws.recv(deadline - t.now())
            except ConnectionEnded as exc:
                self.report("auth", (t.now() - t0) * 1000.0, exc, 0)
                raise
            if data is None and refusal is not None:  # refused, and the server did not close: we do
                ending = self._close(ws, Cause.AUTH_REFUSED, 1000, "", wait=True, detail=refusal)
                self.report("auth", (t.now() - t0) * 1000.0, Failure("auth refused in band (auth_refused)"), 0)
                return ending
            if data is None:
                ending = self._close(ws, Cause.AUTH_TIMEOUT, 1000, "auth timeout", wait=True,
                                     detail=f"no auth answer within {self.settings.auth_timeout_s:g} s")
                self.report("auth", (t.now() - t0) * 1000.0, TimeoutError(ending.detail), 0)
                return ending
            ev = self._event(data)
            kind = ev.kind
            if ev.bad or kind in self._expects.match:  # nothing was sent yet that it could answer
                bad = ev.bad or UNMATCHED_ANSWER
                if self._bad(bad, "during_auth"):
                    ending = self._fatal(ws, bad, ev.detail)
                    self.report("auth", (t.now() - t0) * 1000.0, SessionEnded(f"bad frame: {bad}"), 0)
                    return ending
                continue
            if kind is _E.AUTH_REFUSED and refusal is None:
                # An explicit refusal: the protocol's close follows; give it close_timeout
                # (not the auth timeout), and record the close the server sends.
                self._note(ev, "during_auth")
                refusal = f"auth_refused {ev.code}: {ev.detail}"
                deadline = min(deadline, t.now() + self.settings.close_timeout_s)
                continue
            if kind in _AUTH_ENDERS:
                # An in-band refusal ({"code":400,"body":"Deployment not found"}) or a frame that
                # ends the session answers the auth frame: waiting for the auth timeout would
                # report a refusal as a timeout.
                self._note(ev, "during_auth")
                self._refused = True
                said = f"{kind.name.lower()} {ev.code if ev.code is not None else ''}".strip()
                ending = self._close(ws, Cause.AUTH_REFUSED, 1000, "", wait=True,
                                     detail=f"{said}: {ev.detail}" if ev.detail else said)
                self.report("auth", (t.now() - t0) * 1000.0, Failure(f"auth refused in band ({kind.name.lower()})"), 0)
                return ending
            if kind is _E.AUTH_OK:
                t1 = self._arrival(ws)
                if resumed and ev.fields.get("newSession") is True:
                    # A reconnect that reused its grant should find its session.
                    self.recorder.not_resumed += 1
                lc.step(Step.AUTH_OK, t1)
                self.recorder.session_authenticated(expected_drop(behaviour))
                self._timed("auth", t1 - t0, len(data))
                self._recovered(t1)
                return None
            self._note(ev)

    def _recovered(self, auth_at: float) -> None:
        """A reconnect got through auth: count it and its time to recover."""
        dropped_at, self._dropped_at = self._dropped_at, None
        if dropped_at is None:
            return
        rec = self.recorder
        rec.reconnect_successes += 1
        recovered = auth_at - dropped_at
        rec.recover.record(int(recovered * 1e6))
        self.report("reconnect", recovered * 1000.0, None, 0)
