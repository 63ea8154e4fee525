"""Scenario files: one TOML file for Locust and loadkit, validated all at once.

Theory of operation
-------------------
``locust --config scenario.toml`` makes Locust read the file's
``[tool.locust]`` table (users, spawn rate, run time, locustfile…). The same
file's ``[tool.loadkit]`` table describes everything loadkit-specific in
sections a person can read::

    [tool.loadkit.target]      host, profile
    [tool.loadkit.lifecycle]   session_seconds, keepalive_interval, … (a guest's life)
    [tool.loadkit.mix]         behaviour = weight
    [tool.loadkit]             thresholds = ["auth.p95 < 300", …]
    [tool.loadkit.gateway]     settings of the embedded reference gateway
    [tool.loadkit.profile]     options of the chosen profile (secrets from env vars)
    [tool.loadkit.report]      report, series, html, series_interval

``load_scenario(path)`` reads and checks the whole table and raises one
``ScenarioError`` listing *every* problem, one per line, each naming the
file, the full key, the value found and what was expected (unknown keys get
a "did you mean"). Nothing is checked twice in different words: values are
validated by the same parsers the command-line options use
(``loadkit.settings``, ``loadkit.report.thresholds``, the gateway's
settings, the profile's own constructor).

The keys of ``lifecycle``, ``report`` and ``target.profile`` are those of
the option table (``loadkit.options.OPTIONS``, an entry's ``key``), each
TOML value parsed by its option's own parser. The result is a
``Scenario``. ``option_values()`` are the loadkit options as the command
line would have spelt them (``OptionText``: the text, with its parsed
value), keyed by their argparse ``dest``, ready to fill in whatever the
command line did not set: **command line > scenario file > defaults**
(``apply_to``, given what argparse recorded as given). ``profile_options`` are the
keyword arguments for ``get_profile``, with ``{env = "NAME"}`` values
resolved; those values are ``secrets``, which ``redact`` removes from any
text before it is printed or written.

Modules: this one reads the file (``load_scenario``); ``loadkit.config.check``
validates its table; ``loadkit.config.scenario`` holds the result
(``Scenario``) and ``redact``.

Pure: reads one file and the environment, imports neither Locust nor gevent.
"""

from __future__ import annotations

import os
import tomllib

from loadkit.config.check import check_table
from loadkit.config.scenario import SECTIONS, Scenario, redact
from loadkit.errors import MISSING, Problem, ScenarioError

__all__ = [
    "SECTIONS",
    "Problem",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "redact",
]


# -- loading ---------------------------------------------------------------------------------------------


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate ``path``; raise ``ScenarioError`` listing every problem.

    A file that does not end in ``.toml`` (a ``locust.conf``) has no loadkit
    table: an empty ``Scenario``. A ``.toml`` without ``[tool.loadkit]`` is
    fine too (only ``[tool.locust]`` then matters).
    """
    name = os.fspath(path)
    if not name.endswith(".toml"):
        return Scenario(name)
    try:
        with open(name, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ScenarioError([Problem(name, "file", MISSING, f"cannot be read: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([Problem(name, "file", MISSING, f"is not valid TOML: {exc}")]) from None
    return check_table(name, data, os.environ)
