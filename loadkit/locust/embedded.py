"""The embedded reference gateway: started when no ``--host`` is given.

Started once per run, by the process that is not a worker (single process
or master), in Locust's ``init`` event (after any fork, before users spawn),
in its own process: never inside Locust's gevent process, whose event loop
would then measure itself.
"""

from __future__ import annotations

import logging
from typing import Any

from loadkit.errors import ConfigError

logger = logging.getLogger("loadkit")


def start(gateway_sets: list[str], port: int = 0) -> Any:
    """Start the gateway with ``--set`` items on ``port`` (0: any free port); its handle."""
    from loadkit.gateway.process import GatewayProcess

    args: list[str] = []
    for item in gateway_sets:
        if "=" not in item:
            raise ConfigError(f"--gateway-set expects KEY=VALUE, got {item!r}")
        args += ["--set", item]
    gateway = GatewayProcess(args, port=port)
    try:
        url = gateway.start()
    except Exception as exc:
        raise ConfigError(f"the embedded gateway did not start: {exc}") from None
    logger.info("loadkit: no --host given; started the reference gateway at %s", url)
    return gateway
