"""``Scenario``: a validated scenario file, and ``redact``, which keeps its secrets out of any text.

What ``loadkit.config.load_scenario`` returns (see ``loadkit.config`` for the
theory of operation). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loadkit.options import OptionText
from loadkit.protocol import get_profile
from loadkit.protocol.base import Profile

__all__ = ["SECTIONS", "Scenario", "redact"]

#: The sections of ``[tool.loadkit]`` (``thresholds`` is a list, the rest tables).
SECTIONS = ("target", "lifecycle", "mix", "thresholds", "gateway", "profile", "report")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and its URL-quoted form) replaced by ``<secret>``."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.add(secret)
            forms.add(quote(secret, safe=""))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<secret>")
    return text


# -- the scenario -------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Scenario:
    """A validated scenario file."""

    path: str
    #: ``[tool.loadkit.target] profile``, or None (the command line's ``--protocol`` or its default)
    profile: str | None = None
    #: ``[tool.loadkit.target] host``, or None (Locust's ``--host``, or the embedded gateway)
    host: str | None = None
    values: Mapping[str, str | list[OptionText]] = field(default_factory=dict)
    #: keyword arguments for ``get_profile(profile, **profile_options)``, env values resolved
    profile_options: Mapping[str, Any] = field(default_factory=dict)
    #: values never to print: every value taken from the environment, the gateway's secret
    secrets: frozenset[str] = frozenset()
    #: the file's ``[tool.locust]`` table, as Locust reads it
    locust: Mapping[str, Any] = field(default_factory=dict)

    def option_values(self) -> dict[str, str | list[OptionText]]:
        """loadkit's options as the command line spells them, by argparse dest.

        Text for single values ("10-30", "20", "normal=95,no_keepalive=5"), lists
        for the repeatable ``threshold`` and ``gateway_set``; ``protocol`` and
        Locust's own ``host`` when the file sets them. Only what the file sets.
        """
        return {k: list(v) if isinstance(v, list) else v for k, v in self.values.items()}

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def apply_to(self, namespace: Any, given: Iterable[str] = ()) -> list[str]:
        """Set each file value on ``namespace`` unless its dest is in ``given``; the dests set.

        ``given`` are the dests the command line (or the environment) set:
        they win over the file (``loadkit.locust.options.given``).
        """
        skip = set(given)
        applied = []
        for dest, value in self.option_values().items():
            if dest not in skip:
                setattr(namespace, dest, value)
                applied.append(dest)
        return applied

    def make_profile(self, name: str | None = None) -> Profile:
        """The profile ``name`` (default: the file's), with the file's options if it is the file's."""
        chosen = name or self.profile or "guest"
        options = dict(self.profile_options) if chosen == (self.profile or "guest") else {}
        return get_profile(chosen, **options)

    def __repr__(self) -> str:
        return (f"Scenario(path={self.path!r}, profile={self.profile!r}, host={self.host!r}, "
                f"options={sorted(self.values)}, profile_options={sorted(self.profile_options)}, "
                f"secrets={len(self.secrets)})")
