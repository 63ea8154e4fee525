"""Profiles by name: the one place that maps ``--profile NAME`` to a class."""

from __future__ import annotations

from collections.abc import Callable

from loadkit.errors import ConfigError
from loadkit.protocol.base import Profile
from loadkit.protocol.guest import GuestProfile

_FACTORIES: dict[str, Callable[..., Profile]] = {"guest": GuestProfile}


def register(name: str, factory: Callable[..., Profile]) -> None:
    _FACTORIES[name] = factory


def names() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, **options: object) -> Profile:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile {name!r}: expected one of {', '.join(names())}"
        ) from None
    return factory(**options)
