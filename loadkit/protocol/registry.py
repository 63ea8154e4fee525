"""Profiles by name: the one place that maps ``--protocol NAME`` to a class.

``create(name, **options)`` checks option names against the factory's
signature before calling it, so an unknown or misspelt option is a
``ProfileOptionError`` naming it (with a "did you mean"), like every other
bad profile option, instead of a ``TypeError`` from deep inside.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from loadkit.errors import ConfigError
from loadkit.protocol.base import Profile, ProfileOptionError
from loadkit.protocol.custom import CustomProfile
from loadkit.protocol.guest import GuestProfile
from loadkit.protocol.webmessaging import WebMessagingProfile

_FACTORIES: dict[str, Callable[..., Profile]] = {
    "guest": GuestProfile,
    "webmessaging": WebMessagingProfile,
    "custom": CustomProfile.from_options,
}


def register(name: str, factory: Callable[..., Profile]) -> None:
    _FACTORIES[name] = factory


def names() -> list[str]:
    return sorted(_FACTORIES)


def option_names(name: str) -> list[str] | None:
    """The options a profile takes, or None when it takes any (``**options``)."""
    factory = _factory(name)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def create(name: str, **options: object) -> Profile:
    factory = _factory(name)
    known = option_names(name)
    if known is not None:
        unknown = [key for key in options if key not in known]
        if unknown:
            problems = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hint = (f'did you mean "{close[0]}"?' if close
                        else f"the {name} profile takes " + (", ".join(known) if known else "no options"))
                problems.append((key, options[key], f"unknown option; {hint}"))
            raise ProfileOptionError(name, problems)
    return factory(**options)


def _factory(name: str) -> Callable[..., Profile]:
    try:
        return _FACTORIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile {name!r}: expected one of {', '.join(names())}"
        ) from None
