"""End the gateway when the pipe that ties it to its parent ends (stdin, or the supervisor's pipe).

Why a pipe: a parent that dies, even by ``kill -9``, closes its end, and the
child reads EOF; no signal has to reach it. Both the single-process gateway
(``--watch-stdin``) and each process of a multi-process one (the
supervisor's lifeline) watch a descriptor this way, and the supervisor
itself watches its stdin.

A thread doing raw ``os.read`` works for pipes, files and terminals alike
and, unlike ``sys.stdin.read``, holds no interpreter lock at exit.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

__all__ = ["watch_eof"]


def watch_eof(fd: int, on_eof: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Call ``on_eof`` once ``fd`` reaches EOF (or fails): in ``loop``, thread-safely, when one is given.

    Without a loop, ``on_eof`` runs in the watching thread, so it must be
    thread-safe itself (``threading.Event.set`` is).
    """

    def run() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        if loop is None:
            on_eof()
            return
        try:
            loop.call_soon_threadsafe(on_eof)
        except RuntimeError:  # loop already closed: we are exiting anyway
            pass

    threading.Thread(target=run, name="loadkit-gateway-lifeline", daemon=True).start()
