"""The reference gateway: a guest-chat server with a seedable fault plan, in its own process.

Run it with ``python -m loadkit.gateway`` (see ``__main__``), or from Python
and tests with :class:`~loadkit.gateway.process.GatewayProcess`. Importing
this package stays cheap and gevent-safe: the asyncio server is only
imported by the gateway process itself.
"""

from .process import GatewayProcess, GatewayStartError
from .settings import GatewaySettings, SettingsError, load_settings

__all__ = ["GatewayProcess", "GatewayStartError", "GatewaySettings", "SettingsError", "load_settings"]
