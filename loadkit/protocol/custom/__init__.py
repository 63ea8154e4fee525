"""The ``custom`` profile: a gateway's JSON schema described in a scenario file.

Theory of operation
-------------------
A team whose gateway is "the guest protocol, but with ``command`` instead of
``type``" (the seed thread) should not have to write Python. Everything a
profile does is described as data in the scenario file's
``[tool.loadkit.profile]`` table (see ``docs/profiles.md``):

- **frame templates** for auth, ping, message and goodbye: JSON objects
  written as TOML tables, whose strings may hold placeholders ``{guestId}``,
  ``{token}``, ``{seq}``, ``{id}`` (a fresh UUID per frame), ``{text}``,
  ``{ts_ms}`` (epoch milliseconds), ``{guestNo}`` (token call only) and any
  name from ``vars``. A string that is exactly one placeholder takes the
  value's own type (``id = "{seq}"`` sends a number); anything else is text.
  ``ping_ref`` / ``message_ref`` name the field of the sent frame that the
  answer carries back.
- **the token call**: ``token = "generate"`` (the guest makes a UUID token)
  or a table with method, path, body template, headers and the JSON paths of
  guestId, token and (optionally) the expiry in the answer.
- **the WebSocket path** (a template: ``{guestId}``, ``{token}``, vars are
  URL-quoted) and constant handshake ``headers``.
- **matchers**, an ordered list; the first whose ``when`` fields all match
  names the frame's kind, and paths say where its ref, code, retry-after and
  detail are.

Templates and matchers are compiled once, when the profile is built; a frame
costs a few closure calls and one ``orjson.dumps``, and classifying one
``orjson.loads`` plus the matchers' dict lookups.

What templates cannot say (a signature over the frame, a computed field, a
binary framing) goes in a **hook**: ``hook = "package.module:Name"`` names a
class or function called with the template profile (``Name(base)``); every
profile method the returned object has (``auth_frame``, ``classify``, …)
replaces the template one, and can call ``base.method(...)`` to start from
the templates. Parts of the file the hook replaces may then be omitted.

Every bad part of the description is reported at once, each with its key
(``ProfileOptionError``), so a scenario loader can name file and key.

The package, by job: ``template`` (placeholders and compiled frame
templates), ``match`` (paths and matchers: server frame → event),
``schema`` (the table's keys, unknown-key hints, the hook's resolution) and
``profile`` (the Profile interface over them, and the hooked variant).
"""

from __future__ import annotations
from loadkit.protocol.custom.match import KINDS
from loadkit.protocol.custom.profile import CustomProfile, HookedProfile
from loadkit.protocol.custom.schema import HOOKABLE
from loadkit.protocol.custom.template import PLACEHOLDERS

__all__ = ["CustomProfile", "HookedProfile", "KINDS", "PLACEHOLDERS", "HOOKABLE"]
