"""The web messaging guest's goodbye, as Genesys's SDKs speak it: two answered flows.

Why its own flow: Genesys's guest SDKs treat the two goodbye requests as
requests with answers, not as frames sent on the way out:

- **Presence Clear** (an ``onMessage``, so under the 2-per-second limit) ends
  the conversation; it is answered by ``SessionClearedEvent`` (a
  ``ConnectionClosedEvent`` may follow, and the server may then close). A
  refusal with ``TooManyRequestsErrorMessage`` is retried after its
  ``retryAfter``.
- **closeSession** is answered by a ``SessionResponse`` with ``connected:
  false``; with ``closeAllConnections`` the token's other sockets get a
  ``ConnectionClosedEvent``.

They run one after the other (the option ``goodbye``: ``both`` = Clear, then
closeSession), each request with its own ``tracingId`` so that an answer or a
refusal is told from anything else. Once the Clear is confirmed the session
is over on the server: a ``ConnectionClosedEvent``, a normal close, or a
``4006``/``4007`` answer to closeSession ("no such session") then completes
the goodbye rather than refusing it; those answers are caused by our own
goodbye and are never counted as the target's errors.

Pure: no I/O and no clock (the driver passes ``now``); fresh ``tracingId``
values are the only thing made here.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

from loadkit.protocol.base import EventKind, GoodbyeFlow, ServerEvent, Taken

__all__ = ["CLEAR", "CLOSE_SESSION", "SESSION_CLOSED", "WebMessagingGoodbye"]

_E = EventKind

CLEAR = "clear"
CLOSE_SESSION = "close_session"
#: ``ServerEvent.detail`` of a ``SessionResponse`` with ``connected: false`` (closeSession's answer).
SESSION_CLOSED = "SessionResponse connected=false"
#: What each step waits for (for the failure detail).
_AWAITS = {CLEAR: "SessionClearedEvent", CLOSE_SESSION: "SessionResponse connected:false"}
#: Error codes that, after a confirmed Clear, say "that session is gone": what closeSession asked for.
_GONE_CODES = frozenset({4006, 4007})
#: retryAfter when a 429 says none (the document's limit is per second).
_DEFAULT_RETRY_S = 1.0

#: Builds a step's frame from its tracingId.
FrameMaker = Callable[[str], bytes]


class WebMessagingGoodbye:
    """One guest's goodbye: steps ``clear`` and/or ``close_session``, each awaited in turn."""

    def __init__(self, steps: list[str], makers: dict[str, FrameMaker], timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._steps = list(steps)
        self._makers = makers
        self.done = not self._steps
        self.failed = ""
        #: the first request is due at once
        self.next_at = -math.inf if self._steps else math.inf
        self.cleared = False
        #: tracingId of the request in flight (None before the first)
        self.ref: str | None = None
        #: how many times a request was refused with 429 and sent again
        self.retries = 0

    @property
    def step(self) -> str | None:
        return self._steps[0] if self._steps else None

    def frames(self, now: float) -> list[bytes]:
        step = self.step
        if self.done or self.failed or step is None or now < self.next_at:
            return []
        self.ref = str(uuid.uuid4())
        self.next_at = math.inf
        return [self._makers[step](self.ref)]

    def waiting_for(self) -> str:
        step = self.step
        return _AWAITS[step] if step is not None else "nothing"

    def server_close_ends_it(self) -> bool:
        return self.done or self.cleared

    def feed(self, ev: ServerEvent, now: float) -> Taken:
        if self.done or self.failed:
            return Taken.NOT_MINE
        kind = ev.kind
        step = self.step
        if kind is _E.SESSION_ENDED:
            return self._ended(ev.detail, now)
        mine = self.ref is not None and (ev.ref == self.ref or ev.ref is None)
        if kind is _E.RATE_LIMITED and mine:
            self.retries += 1
            self.next_at = now + (ev.retry_after or _DEFAULT_RETRY_S)
            return Taken.REFUSAL
        gone = self.cleared and step == CLOSE_SESSION and ev.code in _GONE_CODES
        if kind is _E.SESSION_EXPIRED and gone:
            self._advance(now)
            return Taken.ANSWER
        if kind is _E.ERROR and mine:
            if gone:
                self._advance(now)
                return Taken.ANSWER
            what = "Presence Clear" if step == CLEAR else "closeSession"
            self.failed = f"{what} refused: {ev.code} {ev.detail}".strip()
            return Taken.REFUSAL
        return Taken.NOT_MINE

    def _ended(self, cls: str, now: float) -> Taken:
        """A session-ending frame: the answer a step waits for, or the end a confirmed Clear allows."""
        if cls == "SessionClearedEvent":
            if self.step == CLEAR:
                self.cleared = True
                self._advance(now)
            else:  # the session was cleared (by us before, or elsewhere): what the goodbye wants
                self.cleared = True
            return Taken.ANSWER
        if cls == SESSION_CLOSED:
            self.done = True  # the session is closed: nothing left to ask for
            self._steps.clear()
            return Taken.ANSWER
        if self.cleared:  # ConnectionClosedEvent, LogoutEvent after a confirmed Clear: the SDKs' end
            self.done = True
            self._steps.clear()
            return Taken.ANSWER
        return Taken.NOT_MINE

    def _advance(self, now: float) -> None:
        self._steps.pop(0)
        self.ref = None
        if self._steps:
            self.next_at = now  # the next request goes out at once
        else:
            self.done = True
            self.next_at = math.inf


def _conforms(flow: WebMessagingGoodbye) -> GoodbyeFlow:
    """mypy: the web messaging goodbye is a ``GoodbyeFlow`` as the driver declares it."""
    return flow
