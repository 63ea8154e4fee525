"""loadkit's options on Locust's parser, from the one table in ``loadkit.options``.

Registered directly on the parser (not an argument group: groups reject
Locust's extra keywords and the option silently goes missing). Each
``type=`` parses the text into an ``OptionText`` carrying its value, or
raises ``argparse.ArgumentTypeError``, so a bad value gives ``locust:
error: argument --x: …`` and exit 2 before any fork, from the command
line, the environment or a Locust config file alike.

What was given
--------------
Each option's action records its dest in the namespace's ``loadkit_given``
list when argparse calls it, that is when the option was given on the
command line (abbreviated or not, ``--x v`` or ``--x=v``), in the
environment or in a Locust config file (configargparse feeds those through
the same actions). ``given(namespace)`` is that record: the options a
scenario file must not override. A list, not a set: Locust ships the
namespace to workers with msgpack.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from loadkit.errors import ConfigError
from loadkit.options import (
    FLAG,
    OPTIONS,
    LoadkitOptions,
    Option,
    parse_text,
    resolve,
    validate_host,
)

__all__ = ["GIVEN", "actions", "given", "register", "settings_from", "validate_host"]

#: the namespace attribute that records which loadkit options were given
GIVEN = "loadkit_given"


def _record(namespace: argparse.Namespace, dest: str) -> None:
    record = getattr(namespace, GIVEN, None)
    if not isinstance(record, list):
        record = []
        setattr(namespace, GIVEN, record)
    if dest not in record:
        record.append(dest)


# Subclasses of argparse's own store/append/store_true actions (private names, stable since
# Python 3.2): configargparse recognises them by class when it turns config-file and environment
# values into arguments, so only the recording is added.


class _Store(argparse._StoreAction):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest)


class _Append(argparse._AppendAction):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest)


class _Flag(argparse._StoreTrueAction):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _record(namespace, self.dest)


def _type(option: Option) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse_text(option, text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = option.kind.name  # argparse names it in "invalid <name> value"
    return convert


def register(parser: Any) -> list[argparse.Action]:
    """Add every option of the table to Locust's parser; the actions added."""
    added: list[argparse.Action] = []
    for option in OPTIONS:
        help_text = "loadkit: " + option.help.replace("%", "%%")
        locust_kw: dict[str, Any] = {} if option.web_ui else {"include_in_web_ui": False}
        if option.kind is FLAG:
            action = parser.add_argument(option.flag, action=_Flag, help=help_text, **locust_kw)
        elif option.multiple:
            action = parser.add_argument(option.flag, action=_Append, type=_type(option), default=[],
                                         is_multiple=True, help=help_text, **locust_kw)
        else:
            action = parser.add_argument(option.flag, action=_Store, type=_type(option), default=option.default,
                                         help=help_text, **locust_kw)
        added.append(action)
    return added


class _PlainParser(argparse.ArgumentParser):
    """argparse without Locust's extra keywords: to get loadkit's actions outside a Locust run."""

    def add_argument(self, *args: Any, is_multiple: bool = False, include_in_web_ui: bool = True,
                     **kwargs: Any) -> argparse.Action:
        return super().add_argument(*args, **kwargs)


def actions() -> dict[str, argparse.Action]:
    """loadkit's argparse actions by dest, as ``register`` adds them (``type=``, kind of action)."""
    return {a.dest: a for a in register(_PlainParser(add_help=False))}


def given(namespace: Any) -> frozenset[str]:
    """The dests of the loadkit options argparse saw given (see the module docstring)."""
    record = getattr(namespace, GIVEN, None)
    return frozenset(record) if isinstance(record, list) else frozenset()


def settings_from(opts: Any) -> LoadkitOptions:
    """Every loadkit option of a namespace, typed (values the web UI changed are parsed now)."""
    return resolve(vars(opts))
