"""Start, query and stop a gateway process from tests, scripts or Locust.

Why a child process rather than a thread: the gateway is asyncio and Locust
is gevent; in one process their loops would share a CPU and a GIL and skew
each other's timings. The child gets ``--watch-stdin`` and a pipe as stdin,
so it exits when its parent dies, even by ``kill -9``: no orphan keeps the
port or the machine busy.

Only ``subprocess``, ``os``, ``signal``, ``time``, ``json`` and ``urllib``
are used, all of which gevent's monkey-patching makes cooperative, so this
works unchanged in plain Python and inside Locust.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any

__all__ = ["GatewayProcess", "GatewayStartError"]

_PREFIX = b"loadkit gateway listening on "
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def _opener() -> urllib.request.OpenerDirector:
    """urllib without *_proxy variables, and without verifying our own loopback gateway.

    With tls_cert the gateway may be self-signed (the harness under test is
    what verifies). Built per call: gevent may patch ``ssl`` after import,
    and a context made before that cannot wrap a patched socket.
    """
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))


class GatewayStartError(RuntimeError):
    """The gateway did not print its URL in time; the message holds its stderr."""


class GatewayProcess:
    """A ``python -m loadkit.gateway`` child process.

    ::

        with GatewayProcess(settings={"idle_timeout_s": 2}, seed=7) as gw:
            gw.url        # "http://127.0.0.1:PORT"
            gw.ws_url     # "ws://127.0.0.1:PORT/api/v2/guest/websocket"
            gw.stats()    # the /_gateway/stats document

    ``settings_args`` are passed through as command-line arguments
    (``["--set", "x=1", "--config", "f.toml"]``); ``settings`` is the same as
    ``--set key=value`` for each item (use ``"faults.drop_fraction"`` keys for
    the fault table; sequences become comma lists).
    """

    def __init__(
        self,
        settings_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settings: Mapping[str, Any] | None = None,
        seed: int | None = None,
        verbose: bool = False,
    ) -> None:
        args = list(settings_args)
        for key, value in (settings or {}).items():
            args += ["--set", f"{key}={_format(value)}"]
        if seed is not None:
            args += ["--seed", str(seed)]
        if verbose:
            args.append("-v")
        self.args = args
        self.host = host
        self.port = port
        self.url: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # --- lifecycle -------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "loadkit.gateway", "--watch-stdin",
                "--host", self.host, "--port", str(self.port), *self.args]

    def start(self, timeout: float = 10) -> str:
        """Start the child and return its base URL once it listens."""
        if self.proc is not None:
            raise RuntimeError("gateway already started")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        # stderr goes to a file, not a pipe: nobody reads it while the gateway
        # runs, and a full pipe would block the gateway's event loop.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (outlives this call: closed by stop())
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            start_new_session=True, env=env,
        )
        try:
            line = self._read_first_line(timeout)
        except BaseException:
            self.kill()
            raise
        self.url = line[len(_PREFIX):].decode().strip()
        return self.url

    def _read_first_line(self, timeout: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        buffer = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buffer:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = None
            if chunk:
                buffer += chunk
                continue
            if chunk == b"" or self.proc.poll() is not None:
                self.proc.wait()
                raise GatewayStartError(self._failure(f"exited with status {self.proc.returncode}"))
            if time.monotonic() > deadline:
                raise GatewayStartError(self._failure(f"did not report its URL within {timeout} s"))
            time.sleep(0.01)
        line = buffer.split(b"\n", 1)[0]
        if not line.startswith(_PREFIX):
            raise GatewayStartError(self._failure(f"printed {line!r} instead of its URL"))
        return line

    def _failure(self, what: str) -> str:
        stderr = self.stderr_text().strip()
        return f"gateway {what}; command: {' '.join(self.command)}" + (f"; stderr: {stderr}" if stderr else "")

    def stderr_text(self) -> str:
        """Everything the child wrote to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM (sessions get 1001 "going away"), wait; SIGKILL if it hangs. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)  # a multi-process gateway forwards it to its workers
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
        self._close_pipes()
        return self.proc.returncode

    def _kill_group(self) -> None:
        """SIGKILL the gateway and its worker processes (its own process group, from start_new_session)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.proc.kill()
        self.proc.wait()

    def kill(self) -> int | None:
        """SIGKILL now: clients see their connections end with no close frame (1006)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._kill_group()
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self) -> None:
        assert self.proc is not None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except OSError:
                    pass

    def close_stdin(self) -> None:
        """What the child sees when its parent dies: EOF on stdin, so it shuts down gracefully."""
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    def __enter__(self) -> GatewayProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- HTTP helpers ----------------------------------------------------------

    @property
    def ws_url(self) -> str:
        base = self._base()
        return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/api/v2/guest/websocket"

    def _base(self) -> str:
        if self.url is None:
            raise RuntimeError("gateway not started")
        return self.url

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5) -> tuple[int, Any]:
        """One HTTP request to the gateway; returns (status, decoded JSON body or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self._base() + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with _opener().open(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        return status, (json.loads(raw) if raw else None)

    def stats(self, timeout: float = 5) -> dict[str, Any]:
        """The gateway's ground truth, ``GET /_gateway/stats``."""
        status, body = self.request("GET", "/_gateway/stats", timeout=timeout)
        if status != 200:
            raise RuntimeError(f"/_gateway/stats answered {status}")
        return body  # type: ignore[no-any-return]

    def token(self, display_name: str | None = None) -> dict[str, Any]:
        """Issue a guest token (``POST /api/v2/guests``); returns the 201 body."""
        status, body = self.request("POST", "/api/v2/guests", {"displayName": display_name} if display_name else None)
        if status != 201:
            raise RuntimeError(f"token request answered {status}: {body}")
        return body  # type: ignore[no-any-return]

    def restart(self, pause_s: float) -> dict[str, Any]:
        """Fire a rolling restart now (all sessions get 1012, upgrades 503 for ``pause_s``)."""
        status, body = self.request("POST", f"/_gateway/restart?pause_s={pause_s}")
        if status != 202:
            raise RuntimeError(f"restart answered {status}: {body}")
        return body  # type: ignore[no-any-return]


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_format(v) for v in value)
    return str(value)
