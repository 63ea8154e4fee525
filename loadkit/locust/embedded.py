"""The embedded reference gateway: started when no ``--host`` is given.

Started once per run, by the process that is not a worker (single process
or master), in Locust's ``init`` event (after any fork, before users spawn),
in its own process: never inside Locust's gevent process, whose event loop
would then measure itself.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from loadkit.errors import ConfigError

logger = logging.getLogger("loadkit")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_processes(protocol: str, cores: int) -> int:
    """The embedded gateway's process count unless ``--gateway-set processes=N`` says otherwise.

    Half the cores, because the harness shares the machine: it needs about
    as much CPU per guest as the gateway (each frame is made on one side and
    parsed on the other), and a gateway given the harness's cores would turn
    the harness's own scheduling lag into latency reported as the gateway's.
    So 1 on a 2-core machine, 4 on 8 cores. Always 1 for protocols other than
    ``guest``: Web Messaging's per-token rules hold only within one process.
    """
    return max(1, cores // 2) if protocol == "guest" else 1


def start(gateway_sets: list[str], port: int = 0, protocol: str = "guest") -> Any:
    """Start the gateway with ``--set`` items on ``port`` (0: any free port); its handle."""
    from loadkit.gateway.process import GatewayProcess, GatewayStartError

    args: list[str] = []
    for item in gateway_sets:
        if "=" not in item:
            raise ConfigError(f"--gateway-set expects KEY=VALUE, got {item!r}")
        args += ["--set", item]
    if not any(item.partition("=")[0].strip() == "processes" for item in gateway_sets):
        args = ["--set", f"processes={default_processes(protocol, available_cores())}", *args]
    gateway = GatewayProcess(args, port=port)
    try:
        url = gateway.start()
    except (GatewayStartError, OSError, UnicodeError) as exc:  # it could not start: bad input, exit 2
        raise ConfigError(f"the embedded gateway did not start: {exc}") from None
    logger.info("loadkit: no --host given; started the reference gateway at %s", url)
    return gateway
