"""Protocol profiles: the sans-I/O description of a gateway's wire format.

A profile turns intentions (authenticate, ping, send a message) into frames
and turns frames from the server into ``ServerEvent``s. Lifecycle and metrics
code only ever see ``ServerEvent`` kinds, never a profile's name.
"""

from loadkit.protocol.base import EventKind, Profile, ServerEvent, TokenGrant, TokenRequest

__all__ = ["EventKind", "Profile", "ServerEvent", "TokenGrant", "TokenRequest", "get_profile"]


def get_profile(name: str, **options: object) -> Profile:
    """The profile registered under ``name`` (``guest`` by default)."""
    from loadkit.protocol import registry

    return registry.create(name, **options)
