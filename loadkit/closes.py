"""Who closed a WebSocket first, from the close frames one endpoint saw: one rule for both sides.

Why one function: the harness's transport and the reference gateway's
record each settle every connection's ending from their own side, and the
end-to-end tests compare the two; with two sets of rules (there were) a
disagreement could be a bug or just the rules. So both call
``attribute_close`` with their role, and the rules below are the contract.

The inputs are what websockets' sans-I/O protocol records on either side:
``close_sent``, ``close_rcvd`` and ``close_rcvd_then_sent``, plus whether
the link was lost after our own unanswered close (``link_lost``).

1. No close frame either way: the TCP connection just ended (reset, kill,
   a lost link): code 1006, initiator ``none``, as RFC 6455 (7.1.5) says to
   report it.
2. The peer's frame came first (received, then ours sent; or received and
   none sent): the peer closed, with its code.
3. Both sent before either arrived (ours first by our account, but the peer's
   code differs, so it is not an echo of ours): a simultaneous close. Both
   sides must agree, so by convention it is the **server's** close, with the
   server's code.
4. Ours went unanswered and the link was then lost (the peer reset the
   connection): the peer never read ours (one that had would have answered
   it, or closed with FIN), so the link was lost: 1006, ``none``.
5. Otherwise ours came first (answered or not: a peer that never answers
   still received it): we closed, with our code.

Pure and dependency-free: it sits beside both the harness's layers and the
gateway, which imports of the harness only this and ``loadkit.errors`` (the
one exception tree); tests/test_closes.py checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Attribution", "CloseFrame", "Initiator", "Role", "attribute_close"]

Role = Literal["client", "server"]
Initiator = Literal["client", "server", "none"]


class CloseFrame(Protocol):
    """What is read from a close frame (``websockets.frames.Close`` has these)."""

    @property
    def code(self) -> int: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Attribution:
    """How a connection ended: the code and reason that count, and who closed first."""

    code: int
    reason: str
    initiator: Initiator


LOST = Attribution(1006, "", "none")


def attribute_close(local: Role, sent: CloseFrame | None, rcvd: CloseFrame | None,
                    rcvd_then_sent: bool | None, link_lost: bool = False) -> Attribution:
    """Who closed first, seen from ``local``'s side (see the module docstring for the rules)."""
    peer: Role = "server" if local == "client" else "client"
    if sent is None and rcvd is None:
        return LOST
    if rcvd is not None and (sent is None or rcvd_then_sent):
        return Attribution(rcvd.code, rcvd.reason, peer)
    assert sent is not None
    if rcvd is not None and rcvd.code != sent.code:
        server = sent if local == "server" else rcvd
        return Attribution(server.code, server.reason, "server")
    if rcvd is None and link_lost:
        return LOST
    return Attribution(sent.code, sent.reason, local)
