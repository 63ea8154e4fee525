"""``python -m loadkit.gateway``: run the reference gateway as its own process.

Why its own process: the harness runs under gevent, the gateway under
asyncio; keeping them apart means neither event loop can distort the other's
timings, and the gateway can be killed outright to produce real 1006s.

Contract with whoever starts it (see ``process.GatewayProcess``): the first
line on stdout is ``loadkit gateway listening on http://HOST:PORT``; SIGINT,
SIGTERM or (with ``--watch-stdin``) EOF on stdin close every session with
1001 "going away" and exit 0; a bad option is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import ipaddress
import logging
import secrets
import signal
import sys
from typing import TYPE_CHECKING, Any

from loadkit.errors import ConfigError, UsageError

from .lifeline import watch_eof
from .settings import GatewaySettings, load_settings

if TYPE_CHECKING:
    from .cluster import Peers
    from .shared import Shared

PROG = "loadkit gateway"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535 (0 = any free port), got {port}")
    return port


def _processes(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = one per available core), got {count}")
    return count


def loopback_host(host: str) -> str:
    """The address to bind for ``host``, which must be loopback: traffic never leaves the machine."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise UsageError(f"refusing to listen on {host!r}: use a loopback address (127.0.0.0/8, ::1 or localhost)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Reference guest-chat gateway (HTTP + WebSocket on one port).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="TCP port; 0 picks a free one (default)")
    parser.add_argument("--config", metavar="FILE.toml", help="settings file; fault settings under [faults]")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="override one setting, e.g. idle_timeout_s=5 or faults.drop_fraction=0.1")
    parser.add_argument("--seed", type=int, help="seed of the fault plan (default: random, shown in stats)")
    parser.add_argument("--processes", type=_processes, metavar="N",
                        help="gateway processes on the one port (SO_REUSEPORT), answering as one gateway; "
                             "0 = one per available core (default: the processes setting, 1)")
    parser.add_argument("--watch-stdin", action="store_true",
                        help="exit like on SIGTERM when stdin reaches EOF (dies with the harness)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-v info, -vv debug)")
    return parser


def _start_failure(settings: GatewaySettings, host: str, port: int, exc: OSError) -> tuple[int, str]:
    """(exit status, message) for a gateway that cannot start listening."""
    if settings.tls_cert and not isinstance(exc, (PermissionError, IsADirectoryError)) \
            and exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):  # ssl.SSLError is an OSError
        return 2, f"cannot use tls_cert {settings.tls_cert!r}: {exc.strerror or exc}"
    return 1, f"cannot listen on {host}:{port}: {exc.strerror or exc}"


async def serve_worker(settings: GatewaySettings, host: str, port: int, shared: Shared, peers: Peers,
                       started_at: float, ready: Any, lifeline: int) -> int:
    """One process of a multi-process gateway (``cluster.run`` forks it): serve until told to stop."""
    from .server import Gateway

    gateway = Gateway(settings, shared=shared, peers=peers, started_at=started_at)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, gateway.request_stop)
    try:
        await gateway.start(host, port, reuse_port=True)
        await peers.listen()
    except OSError as exc:
        ready.send(_start_failure(settings, host, port, exc))
        return 1
    ready.send((0, ""))
    ready.close()
    watch_eof(lifeline, gateway.request_stop, loop)
    await gateway.stopping.wait()
    await gateway.shutdown()
    await peers.close()
    return 0


async def _serve(settings: GatewaySettings, host: str, port: int, watch_stdin: bool) -> int:
    from .server import Gateway  # websockets and asyncio machinery only once we run

    gateway = Gateway(settings)
    loop = asyncio.get_running_loop()
    # Before the first line: whoever reads the URL may send SIGTERM right away.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, gateway.request_stop)
    try:
        bound = await gateway.start(host, port)
    except OSError as exc:
        code, message = _start_failure(settings, host, port, exc)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return code
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls_cert else "http"
    print(f"loadkit gateway listening on {scheme}://{shown}:{bound}", flush=True)
    logging.getLogger("loadkit.gateway").info("seed %s, settings %s", settings.seed, settings.public_dict())
    if watch_stdin:
        watch_eof(0, gateway.request_stop, loop)
    await gateway.stopping.wait()
    logging.getLogger("loadkit.gateway").info("shutting down: closing %d sessions", len(gateway.sessions))
    await gateway.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the gateway; returns the exit status (0 stopped, 1 cannot listen, 2 bad options)."""
    try:
        args = build_parser().parse_args(argv)
        host = loopback_host(args.host)
        settings = load_settings(args.config, args.set, args.seed)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except ConfigError as exc:  # UsageError, SettingsError: bad input
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if settings.seed is None:
        settings = dataclasses.replace(settings, seed=secrets.randbelow(2**31))
    from . import cluster  # multiprocessing only where a gateway runs, not where this module is imported

    processes = cluster.resolve_processes(args.processes if args.processes is not None else settings.processes)
    settings = dataclasses.replace(settings, processes=processes)  # stats show the effective count
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("loadkit.gateway").setLevel(
        logging.DEBUG if args.verbose >= 2 else logging.INFO if args.verbose else logging.WARNING)
    try:
        if processes > 1:
            return cluster.run(settings, host, args.port, processes, args.watch_stdin, PROG, serve_worker)
        return asyncio.run(_serve(settings, host, args.port, args.watch_stdin))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


if __name__ == "__main__":
    sys.exit(main())
