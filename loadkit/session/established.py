"""The established phase: keepalives, messages and their answers, then the goodbye.

One loop per session computes the next deadline (keepalive due, message
due, pong overdue, session over) and blocks in ``recv`` until then, so a
guest costs one socket and one greenlet. Every answer closes a pending send
(an ack, a pong, the agent's reply) and is timed from when it was read; an
answer to nothing this session sent is ``unmatched_answer``. Pending sends
expire (``PENDING_ANSWER_S``), so a session's state stays bounded.

At the guest's planned end it says goodbye: the profile's answered goodbye
(``goodbye_flow``, webmessaging's Clear and closeSession) is awaited within
its timeout, or its ``goodbye_frames`` are sent and the guest closes. An ack
or pong still on its way then (read during the goodbye, or while our close
waits for the server's) answers its send like any other: RFC 6455 lets a
server finish the message it is sending before it answers a close.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from loadkit.connection import Connection
from loadkit.errors import (
    ConnectionEnded,
    TargetProtocolError,
)
from loadkit.lifecycle import Cause, Ending, Lifecycle, Step
from loadkit.metrics.recorder import HARNESS_LAG, Recorder
from loadkit.protocol.base import (
    UNMATCHED_ANSWER,
    GoodbyeFlow,
    ServerEvent,
    Taken,
    TokenGrant,
    goodbye_flow,
    reply_refs,
)
from loadkit.settings import Behaviour
from loadkit.session.base import _E, NONE_PENDING, SessionBase

#: How many answered-elsewhere refs (expired or refused requests) a session remembers,
#: so a late answer to one of them is not taken for an answer to nothing.
_GONE_REFS = 256
#: How long a sent message's ack (and the agent reply it may get) stays
#: pending. After that the entry expires: an ack that never came counts as
#: ``messages.unanswered``; a reply that never came is simply dropped (agents
#: need not answer every message). This bounds a session's state: without it
#: a target whose agents answer some messages only grew ~1,000 entries per
#: guest-hour. A late answer to an expired message is still recognised.
PENDING_ANSWER_S = 60.0
_ABSENT: Any = object()
_NEVER = float("inf")
#: The tables of messages awaiting an answer until the session sends its first
#: message (and of refs answered elsewhere until it forgets one): one shared,
#: always empty dict instead of three per session (base.NONE_PENDING; ``_forget``
#: returns the one to keep).
_NONE_PENDING = NONE_PENDING
#: The text of the guests' messages, by length: one string for all sessions.
_TEXTS: dict[int, str] = {}
#: What each answer closes (its pending sends: ``pings``, ``acks`` or ``replies``) and its latency phase.
_ANSWER_PHASE = {_E.ACK: "message", _E.PONG: "ping", _E.AGENT_MESSAGE: "reply"}


class Established(SessionBase):
    """The established phase's loop, and the goodbye that ends it."""

    __slots__ = ()

    def _established(self, lc: Lifecycle, ws: Connection, grant: TokenGrant, behaviour: Behaviour,
                     end_at: float) -> Ending:
        t = self.transport
        s = self.settings
        profile = self.profile
        rng = self.rng
        rec = self.recorder
        now = t.now()
        keepalive = behaviour.keepalive
        interval = behaviour.message_interval or s.message_interval
        next_ping = now + s.keepalive_s if keepalive else float("inf")
        next_msg = now + rng.uniform(*interval) if behaviour.messages else float("inf")
        pings: dict[Any, float] = {}
        self._pings = pings  # what is left in it at the session's end is in flight
        acks: dict[Any, float] = _NONE_PENDING  # its own dicts from the first message on
        replies: dict[Any, float] = _NONE_PENDING
        track_replies = reply_refs(profile)  # else nothing would ever pop them
        match = self._expects.match
        #: refs of requests that left ``pending`` unanswered (expired, refused), oldest first:
        #: a late answer to one of them answers something we did send
        gone: dict[Any, None] = _NONE_PENDING
        #: without reply refs, an agent message answers the guest's last message (once)
        last_msg_at: float | None = None
        #: when the server said the session expired (None: it has not)
        expired_at: float | None = None
        auth_at = lc.auth_at if lc.auth_at is not None else now
        #: when the oldest pending send (ack or reply) expires: ``_expire`` runs only then
        expire_at = _NEVER
        seq = 0
        misses = 0
        last_rx = now  # for "time since the last server frame" on a keepalive timeout
        text = _message_text(s.message_chars)
        frame: bytes | None
        ev: ServerEvent | None
        while True:
            now = t.now()
            if now >= end_at:
                if expired_at is not None:  # told the session expired, and the socket stayed open
                    return self._close(ws, Cause.SESSION_EXPIRED, 1000, "", wait=True,
                                       detail="session expired, socket left open")
                flow = goodbye_flow(profile, grant)
                if flow is not None:
                    return self._goodbye(lc, ws, flow, pings, acks, replies, gone)
                for frame in profile.goodbye_frames(grant):
                    ws.send(frame)
                return self._close(ws, Cause.SESSION_DONE, 1000, "", wait=True,
                                   **self._pending_checks(pings, acks, replies, gone))
            if now >= next_ping:
                seq += 1
                frame, ref = profile.ping_frame(seq, grant)
                ws.send(frame)
                rec.pings_sent += 1
                pings[ref] = now
                next_ping = now + s.keepalive_s
            if pings:
                oldest = min(pings.values())
                if now - oldest >= s.pong_timeout_s:
                    for ref in [r for r, ts in pings.items() if now - ts >= s.pong_timeout_s]:
                        del pings[ref]
                        gone = _forget(gone, ref)
                        rec.missed_pongs += 1
                        misses += 1
                    if misses >= s.keepalive_misses:
                        rec.silence.record(int((now - last_rx) * 1e6))
                        return self._close(ws, Cause.KEEPALIVE_TIMEOUT, 1001, "keepalive timeout",
                                           wait=False, detail=f"no pong within {s.pong_timeout_s:g} s")
                pong_due = min(pings.values()) + s.pong_timeout_s if pings else float("inf")
            else:
                pong_due = float("inf")
            if now >= expire_at:
                expire_at, gone = _expire(acks, replies, gone, now - PENDING_ANSWER_S, rec)
            if now >= next_msg:
                seq += 1
                frame, ref = profile.message_frame(seq, text, grant)
                ws.send(frame)
                rec.messages_sent += 1
                if acks is _NONE_PENDING:
                    acks, replies = {}, {}
                    self._acks = acks  # what is left in it at the session's end is in flight
                acks[ref] = now
                if track_replies:
                    replies[ref] = now
                else:
                    last_msg_at = now
                if expire_at == _NEVER:
                    expire_at = now + PENDING_ANSWER_S
                next_msg = now + rng.uniform(*interval)
            wait = min(end_at, next_ping, next_msg, pong_due) - now
            data = ev = frame = None  # the last frames in and out are not kept through the wait
            data = ws.recv(wait if wait > 0 else 0)
            if data is None:
                if wait > 0 and not self.live.stopping:  # a timer wake-up: how late it came is the harness's lag
                    rec.observe(HARNESS_LAG, int((t.now() - now - wait) * 1e6))
                continue
            last_rx = self._arrival(ws)
            ev = self._event(data)
            kind = ev.kind
            if ev.bad:
                phase = "just_after_auth" if last_rx - auth_at <= s.just_after_auth_s else "established"
                if self._bad(ev.bad, phase):
                    return self._fatal(ws, ev.bad, ev.detail)
                continue
            latency = _ANSWER_PHASE.get(kind)
            if latency is not None:  # an ack, a pong or the agent's reply: a round trip
                pending = pings if kind is _E.PONG else acks if kind is _E.ACK else replies
                ref = ev.ref
                try:
                    sent = pending.pop(ref, None)
                except TypeError:  # a list or an object as an id: it answers nothing we sent
                    sent, ref = None, repr(ref)
                if sent is not None:
                    if kind is _E.PONG:
                        misses = 0
                        if not pings:
                            pings.clear()  # an emptied dict keeps its table: give it back while idle
                    self._round_trip(kind, latency, last_rx - sent, len(data))
                elif kind in match and gone.pop(ref, _ABSENT) is _ABSENT:  # an answer to nothing we sent
                    where = "just_after_auth" if last_rx - auth_at <= s.just_after_auth_s else "established"
                    if self._bad(UNMATCHED_ANSWER, where):
                        return self._fatal(ws, UNMATCHED_ANSWER, f"{kind.name.lower()} {str(ref)[:40]}")
                    continue
                if kind is _E.AGENT_MESSAGE:
                    rec.agent_messages += 1
                    if last_msg_at is not None:
                        self._round_trip(kind, "reply", last_rx - last_msg_at, len(data))
                        last_msg_at = None
            elif kind is _E.SESSION_ENDED:  # e.g. ConnectionClosedEvent: the server is done with us
                return self._close(ws, Cause.SERVER_ENDED, 1000, "", wait=True, detail=ev.detail or "session ended",
                                   **self._pending_checks(pings, acks, replies, gone))
            elif kind is _E.SESSION_EXPIRED:
                # Expired: send nothing more (every frame would be refused 4006), give the
                # server its close timeout to close (the guest protocol's 4006), then close.
                self._expired = True
                if ev.code is not None:
                    rec.errors[str(ev.code)] += 1
                if expired_at is None:
                    expired_at = t.now()
                    end_at = min(end_at, expired_at + s.close_timeout_s)
                    next_ping = next_msg = float("inf")
                    for ref in pings:  # no longer awaited, but a pong for one still answers what we sent
                        gone = _forget(gone, ref)
                    rec.pings_in_flight += len(pings)  # the session ended for the target: none will be timed
                    pings.clear()
            elif kind is _E.RATE_LIMITED:
                rec.errors["4029"] += 1
                ref = ev.ref
                try:
                    if acks.pop(ref, None) is not None:  # refused: no ack and no reply will come
                        rec.messages_refused += 1
                        gone = _forget(gone, ref)
                    replies.pop(ref, None)
                    if pings.pop(ref, None) is not None:  # a refused echo was answered: no missed pong
                        rec.pings_refused += 1
                        gone = _forget(gone, ref)
                except TypeError:
                    pass
                if behaviour.honour_retry_after and ev.retry_after:
                    next_msg = max(next_msg, t.now() + ev.retry_after)
            else:
                self._note(ev)

    def _goodbye(self, lc: Lifecycle, ws: Connection, flow: GoodbyeFlow, pings: dict[Any, float],
                 acks: dict[Any, float], replies: dict[Any, float], gone: dict[Any, None]) -> Ending:
        """Say goodbye and wait (at most ``flow.timeout_s``) until the target confirms it.

        A goodbye the target did not confirm (no answer in time, a refusal,
        a session-ending frame or the connection lost before the answers)
        ends as ``goodbye_incomplete``: the target may still hold the guest's
        conversation, so it is neither ``closed_normally`` nor a drop. A
        refusal the flow retries (429 with ``retryAfter``) is the target's
        error and counted as such; answers caused by the goodbye itself are not.
        A pong or ack for a ping or message sent before the goodbye that
        arrives during it is a round trip like any other (the target answers
        in order, so it comes before the goodbye's own answers); one that
        answers nothing the session sent is an ``unmatched_answer``.
        """
        t = self.transport
        rec = self.recorder
        now = t.now()
        lc.step(Step.GOODBYE, now)
        deadline = now + flow.timeout_s
        checks = self._pending_checks(pings, acks, replies, gone)
        unmatched = checks["unmatched"]
        try:
            while not flow.done and not flow.failed:
                now = t.now()
                if now >= deadline:
                    break
                for frame in flow.frames(now):
                    ws.send(frame)
                wait = min(deadline, flow.next_at) - now
                data = ws.recv(wait if wait > 0 else 0)
                if data is None:
                    continue
                ev = self._event(data)
                if ev.bad:
                    if self._bad(ev.bad, "closing"):
                        return self._fatal(ws, ev.bad, ev.detail)
                    continue
                at = self._arrival(ws)
                taken = flow.feed(ev, at)
                if taken is Taken.REFUSAL:
                    rec.errors[str(ev.code)] += 1
                elif taken is Taken.NOT_MINE:
                    if ev.kind is _E.SESSION_ENDED or ev.kind is _E.SESSION_EXPIRED:
                        self._note(ev)
                        said = ev.detail or ev.kind.name.lower()
                        return self._close(ws, Cause.GOODBYE_INCOMPLETE, 1000, "", wait=True, **checks,
                                           detail=f"goodbye cut short by {said}, waiting for {flow.waiting_for()}")
                    if self._answered_late(ev, len(data), at, pings, acks):
                        continue
                    if unmatched(ev):
                        if self._bad(UNMATCHED_ANSWER, "closing"):
                            return self._fatal(ws, UNMATCHED_ANSWER, f"{ev.kind.name.lower()} {str(ev.ref)[:40]}")
                    else:
                        self._note(ev)
        except TargetProtocolError:
            raise
        except ConnectionEnded as exc:
            if exc.code == 1000 and exc.initiator == "server" and flow.server_close_ends_it():
                return Ending(Cause.SESSION_DONE, exc.code, exc.reason, exc.initiator)
            return Ending(Cause.GOODBYE_INCOMPLETE, exc.code, exc.reason, exc.initiator,
                          f"connection closed mid-goodbye, waiting for {flow.waiting_for()}")
        if flow.done:
            ending = self._close(ws, Cause.SESSION_DONE, 1000, "", wait=True, **checks)
            if ending.cause is Cause.CLOSED and ending.code == 1000 and ending.initiator == "server":
                # The target closed as soon as it had confirmed the goodbye: the protocol's own end.
                return Ending(Cause.SESSION_DONE, ending.code, ending.reason, ending.initiator)
            return ending
        why = flow.failed or f"no {flow.waiting_for()} within {flow.timeout_s:g} s"
        return self._close(ws, Cause.GOODBYE_INCOMPLETE, 1000, "", wait=True, **checks,
                           detail=f"goodbye incomplete: {why}")

    def _pending_checks(self, pings: dict[Any, float], acks: dict[Any, float], replies: dict[Any, float],
                        gone: dict[Any, None]) -> dict[str, Any]:
        """``_close``'s checks of the frames read while closing, against what this session still awaits."""
        return {"answered": partial(self._answered_late, pings=pings, acks=acks),
                "unmatched": partial(self._answers_nothing, pings=pings, acks=acks, replies=replies, gone=gone)}

    def _answered_late(self, ev: ServerEvent, size: int, at: float,
                       pings: dict[Any, float], acks: dict[Any, float]) -> bool:
        """Record a pong or ack that answers a send from before the goodbye or the close; False if it is not one."""
        kind = ev.kind
        pending = pings if kind is _E.PONG else acks if kind is _E.ACK else None
        if pending is None:
            return False
        try:
            sent = pending.pop(ev.ref, None)
        except TypeError:  # a list or an object as an id: it answers nothing we sent
            return False
        if sent is None:
            return False
        self._round_trip(kind, _ANSWER_PHASE[kind], at - sent, size)
        return True

    def _answers_nothing(self, ev: ServerEvent, pings: dict[Any, float], acks: dict[Any, float],
                         replies: dict[Any, float], gone: dict[Any, None]) -> bool:
        """An answer (of a kind the profile matches) to nothing this session sent, or no longer awaits.

        The established loop's own check, inlined there: a late answer to a
        request that left ``pending`` takes it off ``gone`` (a second one is unmatched).
        """
        kind = ev.kind
        if kind not in self._expects.match:
            return False
        pending = pings if kind is _E.PONG else acks if kind is _E.ACK else replies
        try:
            return ev.ref not in pending and gone.pop(ev.ref, _ABSENT) is _ABSENT
        except TypeError:  # a list or an object as an id: it answers nothing we sent
            return True

    def _round_trip(self, kind: _E, phase: str, dt: float, size: int) -> None:
        """One answered ping or message (or the agent's reply to one): counted, and its latency timed."""
        if kind is _E.ACK:
            self.recorder.messages_answered += 1
        self._timed(phase, dt, size)


def _expire(acks: dict[Any, float], replies: dict[Any, float], gone: dict[Any, None], before: float,
            rec: Recorder) -> tuple[float, dict[Any, None]]:
    """Drop pending answers sent before ``before``, oldest first (dicts keep send order).

    Returns when the oldest answer still pending expires (infinity: none is), so the
    loop calls this only then, not on every wake-up; and the ``gone`` to keep (see ``_forget``).
    """
    oldest = _NEVER
    while acks:
        ref, sent = next(iter(acks.items()))
        if sent > before:
            oldest = sent
            break
        del acks[ref]
        gone = _forget(gone, ref)
        rec.messages_unanswered += 1
    while replies:
        ref, sent = next(iter(replies.items()))
        if sent > before:
            oldest = min(oldest, sent)
            break
        del replies[ref]
        gone = _forget(gone, ref)
    return oldest + PENDING_ANSWER_S, gone


def _forget(gone: dict[Any, None], ref: Any) -> dict[Any, None]:
    """Remember ``ref`` as sent and no longer awaited (bounded: oldest forgotten first); the dict to keep.

    The session's first forgotten ref makes its own dict (until then it holds the shared empty one).
    """
    if gone is _NONE_PENDING:
        gone = {}
    gone[ref] = None
    if len(gone) > _GONE_REFS:
        del gone[next(iter(gone))]
    return gone


def _message_text(chars: int) -> str:
    """The text of a guest's message of ``chars`` characters, shared by every session."""
    text = _TEXTS.get(chars)
    if text is None:
        text = _TEXTS[chars] = ("hello from loadkit " * (1 + chars // 19))[:chars]
    return text
