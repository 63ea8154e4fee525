"""Checks of a run's configuration that need more than one option: the profile, the guest mix, the users, the CA file.

Each raises ``ConfigError`` with one line (exit 2 at ``init``; refused at
``test_start`` or in the web form). Called by ``Runtime.configure``.
"""

from __future__ import annotations

import ssl
from typing import Any

from loadkit.config import Scenario
from loadkit.errors import ConfigError
from loadkit.protocol import get_profile
from loadkit.protocol.base import Profile, ProfileOptionError, auth_styles
from loadkit.settings import behaviour


def make_profile(scenario: Scenario | None, name: str) -> Profile:
    """The chosen profile; a profile whose options are missing is one line pointing at the scenario file."""
    try:
        return scenario.make_profile(name) if scenario is not None else get_profile(name)
    except ProfileOptionError as exc:
        if scenario is not None and name == (scenario.profile or "guest"):
            raise  # the scenario's own options: every problem, one per line
        keys = ", ".join(key for key, _value, _expected in exc.problems)
        raise ConfigError(f"--protocol {name}: the {name} profile needs its options ({keys}): give them in the "
                          f"[tool.loadkit.profile] table of a scenario file, --config FILE.toml "
                          f"(see docs/profiles.md)") from None


def check_guest_mix(profile: Profile, mix: Any) -> None:
    """Every guest in the mix must be able to send its auth with this profile."""
    styles = auth_styles(profile)
    for name, weight in mix:
        style = behaviour(name).auth_style
        if weight > 0 and style not in styles:
            raise ConfigError(f"--guest-mix: the {profile.name} profile cannot send the {name!r} "
                              f"guest's auth ({style}); remove it from the mix")


def check_users(opts: Any) -> None:
    """``-u 0`` or fewer measures nothing: bad input, not a run that passes."""
    users = getattr(opts, "num_users", None)
    if users is not None and users < 1:
        raise ConfigError(f"-u/--users must be at least 1, got {users}")


def tls_context(ca: str) -> Any:
    """Verification for https:// targets: the system's CAs, or ``--tls-ca``."""
    if not ca:
        return None
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-ca {ca!r}: cannot load CA certificates ({exc.strerror or exc})") from None
