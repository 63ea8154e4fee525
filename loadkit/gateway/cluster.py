"""Several gateway processes on one port, answering as one gateway.

Why processes: one asyncio process is one core, and a chat load of tens of
thousands of guests saturates it long before the harness. N processes each
listen on the same port with SO_REUSEPORT; the kernel spreads connections
over them. What must be one gateway is made one:

- session numbers, the connection cap and the token window are shared
  memory (``shared.py``), so the fault plan and the limits are the gateway's;
- the token secret is drawn once, before the fork, so any process accepts a
  token any other issued; the clock for ``restart_at_s`` / ``degrade_at_s``
  is the supervisor's start;
- ``/_gateway/stats`` and ``/_gateway/webmessaging``: the process that gets
  the request asks every other one for its own document over a private Unix
  socket (``Peers``) and answers the exact sum (``stats.merge_snapshots``); a
  process that does not answer makes the request fail (503), never a
  partial sum;
- ``/_gateway/restart`` and ``restart_at_s``: every process closes its
  sessions with 1012 and pauses its upgrades; the restart is counted once.

The supervisor (``run``) forks the workers before any event loop exists,
prints the one "listening" line once all of them listen, forwards SIGTERM
and SIGINT, and stops all of them (exit 1) if any one dies. A worker stops
when the supervisor's pipe closes, so none outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import multiprocessing.connection
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .lifeline import watch_eof
from .settings import GatewaySettings
from .shared import ProcessShared

__all__ = ["Peers", "PeerUnavailable", "available_cores", "resolve_processes", "run"]

ASK_TIMEOUT_S = 5.0

Op = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def available_cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_processes(processes: int) -> int:
    """The number of processes a ``processes`` setting means (0 = one per available core)."""
    return processes if processes > 0 else available_cores()


class PeerUnavailable(RuntimeError):
    """A gateway process did not answer its peer."""


class Peers:
    """This worker's view of the others: ask all of them, answer their questions."""

    def __init__(self, index: int, paths: list[str]) -> None:
        self.index = index
        self.paths = paths
        self.ops: dict[str, Op] = {}
        self._server: asyncio.AbstractServer | None = None

    @property
    def leader(self) -> bool:
        """Process 0 runs the gateway-wide timers (``restart_at_s``)."""
        return self.index == 0

    async def listen(self) -> None:
        self._server = await asyncio.start_unix_server(self._answer, self.paths[self.index])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            answer = await self.ops[request.pop("op")](request)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError, KeyError):
            pass
        finally:
            writer.close()

    async def ask_all(self, op: str, **args: Any) -> list[dict[str, Any]]:
        """Every process's answer to ``op``, this one's included, in process order."""
        return list(await asyncio.gather(*(self._ask(i, op, args) for i in range(len(self.paths)))))

    async def _ask(self, index: int, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if index == self.index:
            return await self.ops[op](dict(args))
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(self.paths[index])
                try:
                    writer.write(json.dumps({"op": op, **args}).encode() + b"\n")
                    line = await reader.readline()
                finally:
                    writer.close()
            answer: dict[str, Any] = json.loads(line)
            return answer
        except (OSError, TimeoutError, ValueError) as exc:
            raise PeerUnavailable(f"gateway process {index} did not answer {op!r}: {exc!r}") from None


# --- the supervisor --------------------------------------------------------------


def _port_holder(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket: learns the port for port 0 and keeps it ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


Worker = Callable[[GatewaySettings, str, int, ProcessShared, Peers, float, Any, int], Coroutine[Any, Any, int]]
"""``__main__.serve_worker``: one worker's whole life, given to ``run`` (no import cycle)."""


def _worker(serve: Worker, index: int, settings: GatewaySettings, host: str, port: int, shared: ProcessShared,
            paths: list[str], started_at: float, ready: Any, lifeline: tuple[int, int]) -> None:
    os.close(lifeline[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor forwards Ctrl-C as SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(asyncio.run(serve(settings, host, port, shared, Peers(index, paths), started_at, ready, lifeline[0])))


def run(settings: GatewaySettings, host: str, port: int, processes: int, watch_stdin: bool,
        prog: str, serve: Worker) -> int:
    """Serve with ``processes`` worker processes (each runs ``serve``); returns the exit status."""
    try:
        holder = _port_holder(host, port)
    except OSError as exc:
        print(f"{prog}: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bound = int(holder.getsockname()[1])
    if not settings.secret:  # one key for all processes: a token from one is valid at all
        settings = dataclasses.replace(settings, secret=secrets.token_hex(32))
    ctx = multiprocessing.get_context("fork")
    shared = ProcessShared(settings.token_rate_limit_per_s, ctx)
    rundir = tempfile.mkdtemp(prefix="loadkit-gw-")
    paths = [os.path.join(rundir, f"{i}.sock") for i in range(processes)]
    lifeline = os.pipe()
    receive, send = ctx.Pipe(duplex=False)
    stop = threading.Event()
    started_at = time.monotonic()
    workers = [ctx.Process(target=_worker, name=f"loadkit-gateway-{i}", daemon=False,
                           args=(serve, i, settings, host, bound, shared, paths, started_at, send, lifeline))
               for i in range(processes)]
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            worker.start()
        os.close(lifeline[0])
        send.close()
        failure = _wait_ready(receive, workers, stop)
        if failure is not None:
            code, message = failure
            print(f"{prog}: error: {message}", file=sys.stderr)
            return code
        holder.close()
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if settings.tls_cert else "http"
        print(f"loadkit gateway listening on {scheme}://{shown}:{bound}", flush=True)
        if watch_stdin:
            watch_eof(0, stop.set)
        died = _supervise(workers, stop)
        return 1 if died else 0
    finally:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        os.close(lifeline[1])  # workers that missed SIGTERM see their lifeline end
        for worker in workers:
            if worker.pid is not None:
                worker.join(15)
                if worker.is_alive():
                    worker.kill()
                    worker.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
        shutil.rmtree(rundir, ignore_errors=True)


def _wait_ready(receive: Any, workers: list[Any], stop: threading.Event) -> tuple[int, str] | None:
    """Until every worker listens: None; else (exit status, message) of the first failure."""
    waiting = len(workers)
    deadline = time.monotonic() + 30
    while waiting:
        if stop.is_set():
            return 0, "stopped before listening"
        if time.monotonic() > deadline:
            return 1, "the gateway processes did not start within 30 s"
        ready = multiprocessing.connection.wait([receive, *(w.sentinel for w in workers)], timeout=0.2)
        if receive in ready:
            try:
                status, message = receive.recv()
            except EOFError:
                return 1, "a gateway process exited before listening"
            if status != 0:
                return status, message
            waiting -= 1
        elif ready:
            return 1, "a gateway process exited before listening"
    return None


def _supervise(workers: list[Any], stop: threading.Event) -> bool:
    """Wait for a stop request or a worker's death; True if a worker died on its own."""
    while not stop.is_set():
        if multiprocessing.connection.wait([w.sentinel for w in workers], timeout=0.2):
            return True
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return False
