"""Waiting on one socket watcher with a deadline, the cheap way; the errno's words.

gevent's socket methods raise and catch an exception for every would-block
read, build a ``Timeout`` (an exception instance plus a timer) for every
wait, and throw it into the greenlet when the wait times out; ``sendall``
asks the kernel for the send buffer size on every call. For a guest that
wakes up twice per chat message that was most of the transport's cost. The
plain-TCP path keeps the real non-blocking socket and one read watcher per
connection, and waits on that watcher plus a throwaway timer: a timeout is
the value False, not an exception. TLS keeps gevent's SSLSocket (the SSL
layer has its own want-read/want-write dance).
"""

from __future__ import annotations

import errno
from typing import Any

from gevent import getcurrent
from gevent.hub import get_hub

#: libev's event masks for an io watcher
EV_READ, EV_WRITE = 1, 2


def wait(watcher: Any, timeout: float | None) -> bool:
    """Block this greenlet until ``watcher`` fires (True) or ``timeout`` passes (False).

    Like gevent's ``hub.wait(watcher)`` with a timer beside it, without its
    ``Waiter``: the watchers switch straight back into this greenlet
    (``greenlet.switch`` is their callback), which saves an object and a
    Cython call per wake-up (0.8 µs of the 9 µs a wait costs here). That is
    safe because both watchers are stopped before this returns, however it
    returns: a stopped libev watcher's pending event is dropped, so no
    callback can switch into the greenlet later, somewhere it does not
    wait. A kill (``GreenletExit``) thrown in while waiting propagates after
    both are stopped.
    """
    hub = get_hub()
    switch = getcurrent().switch
    watcher.start(switch, True)
    if timeout is None:
        try:
            return hub.switch() is True
        finally:
            watcher.stop()
    timer = hub.loop.timer(timeout if timeout > 0 else 0.0)
    timer.start(switch, False, update=True)
    try:
        return hub.switch() is True
    finally:
        watcher.stop()
        timer.close()


def write_watcher(fileno: int) -> Any:
    """A watcher for ``fileno`` becoming writable (a connect in progress, a full send buffer)."""
    return get_hub().loop.io(fileno, EV_WRITE)


def read_watcher(fileno: int) -> Any:
    """The one read watcher a plain-TCP connection keeps for its life."""
    return get_hub().loop.io(fileno, EV_READ)


def os_reason(exc: OSError) -> str:
    """``connection reset by peer``: the errno's text, for failure tables."""
    if exc.strerror:
        return exc.strerror.lower()
    if exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return str(exc) or exc.__class__.__name__
