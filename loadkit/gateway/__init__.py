"""The reference gateway: a guest-chat server with a seedable fault plan, in its own process.

Run it with ``python -m loadkit.gateway`` (see ``__main__``), or from Python
and tests with :class:`~loadkit.gateway.process.GatewayProcess`. The names
below are imported lazily: the gateway process itself must not pay for
urllib, and a harness under gevent must not import the asyncio server.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GatewayProcess", "GatewayStartError", "GatewaySettings", "SettingsError", "load_settings"]

_HOMES = {
    "GatewayProcess": "process",
    "GatewayStartError": "process",
    "GatewaySettings": "settings",
    "SettingsError": "settings",
    "load_settings": "settings",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
