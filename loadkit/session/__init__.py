"""Drive one guest through its lifecycle over a transport.

This is where the pure layers meet I/O, without owning any: the transport
does the waiting, the profile makes and reads frames, ``Lifecycle`` keeps
the state and classifies the end, the ``Recorder`` counts. The driver makes
no Locust calls either: phase timings go to a ``report`` callback that the
Locust glue points at ``events.request``.

One greenlet per guest does everything: it computes the next deadline
(keepalive due, message due, pong overdue, session over) and blocks in
``recv`` until then, so a guest costs one socket and one greenlet.

The package, by job: ``base`` (the driver's state, frames in, closing),
``phases`` (token, connect, auth), ``established`` (the established-phase
loop and the goodbye) and ``driver`` (``SessionDriver``: a guest's sessions
and reconnects, and how each session ended).
"""

from __future__ import annotations

from loadkit.session.base import LiveSessions, Report, SessionEnded, log_harness_error
from loadkit.session.driver import SessionDriver
from loadkit.session.established import PENDING_ANSWER_S

__all__ = ["PENDING_ANSWER_S", "LiveSessions", "Report", "SessionDriver", "SessionEnded", "log_harness_error"]
