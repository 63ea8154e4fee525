"""loadkit: a load-testing and soak harness for guest-chat WebSocket gateways.

Layers, from the bottom up: each imports only the ones before it in this
list. "Pure" means no sockets, event loop, timers or Locust, so a layer can
be read and tested without a network. ``lint-imports`` enforces the order
and the purity (``[tool.importlinter]`` in pyproject.toml) and
``.ci/check_cycles.py`` the absence of import cycles; both run in .ci/run.

- ``errors``     the one exception tree; the edges map it to exit codes. Pure.
- ``closes``     who closed a WebSocket first: one rule, used by the harness
  and the gateway alike. Pure.
- ``failures``   the bounded vocabulary of failure texts Locust's tables get. Pure.
- ``protocol``   profiles: intentions to frames, frames to ``ServerEvent``; the
  layers above see event kinds, never a profile's name. Pure.
- ``streams``    one seeded random stream per guest. Pure.
- ``settings``   ``HarnessSettings`` and the grammars of option values. Pure.
- ``lifecycle``  the session's states and transitions as one table; how a
  session ended becomes its outcome and phase. Pure.
- ``metrics``    mergeable histograms, the recorder's counters, survival. Pure.
- ``connection`` what the session driver needs of a transport, as
  ``typing.Protocol`` (so a fake can stand in for it in tests). Pure.
- ``transport``  the only package that owns sockets, gevent and timeouts.
- ``session``    drives one guest's sessions over a ``Transport``; no Locust.
- ``report``     the report, summary, thresholds, compare, HTML and JUnit.
- ``options``    the option table: every option declared once, parsed once.
- ``config``     scenario files, validated all at once.
- ``locust``     the Locust glue, listening on Locust's events; beside it
  ``probe`` (``loadkit probe``: one guest, traced).
- ``cli``        the ``loadkit`` command.

Beside the stack, ``gateway``: the reference gateway, a separate asyncio
program that imports nothing of the harness but ``errors`` and ``closes``.
"""

__version__ = "0.1.0"
